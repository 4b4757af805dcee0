"""The dashboard API's per-rank reads of a ranks="all" run: /api/series?rank= and the ranks on /api/runs/{id}."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from starlette.testclient import TestClient

from expertrack.dashboard.app import create_app
from tests.distributed.builders import two_rank_run


def values(body: dict, run_id: str) -> list[float]:
    return np.frombuffer(base64.b64decode(body["series"][run_id]["values"]), dtype="<f8").tolist()


def test_series_takes_a_rank_and_defaults_to_rank_0(tmp_path: Path) -> None:
    run_id = two_rank_run(tmp_path)
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1:8080")
    default = client.get("/api/series", params={"key": "loss", "runs": run_id}).json()
    assert values(default, run_id) == [0.0, 1.0, 2.0, 3.0]
    rank1 = client.get("/api/series", params={"key": "loss", "runs": run_id, "rank": "1"}).json()
    assert values(rank1, run_id) == [10.0, 11.0, 12.0, 13.0]
    again = client.get("/api/series", params={"key": "loss", "runs": run_id}).json()  # the cache kept rank 0's
    assert values(again, run_id) == [0.0, 1.0, 2.0, 3.0]
    missing = client.get("/api/series", params={"key": "loss", "runs": run_id, "rank": "7"}).json()
    assert missing["series"] == {}
    bad = client.get("/api/series", params={"key": "loss", "runs": run_id, "rank": "x"})
    assert bad.status_code == 400 and "rank" in bad.json()["error"]
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["ranks"] == [0, 1]
    assert {r: s["state"] for r, s in detail["rank_states"].items()} == {"0": "finished", "1": "finished"}


def test_a_long_series_charted_from_levels_is_the_ranks_own(tmp_path: Path) -> None:
    import expertrack

    for rank in (1, 0):  # rank 1 first: its keys get the lower ids
        run = expertrack.init(
            id="long", rank=rank, world_size=2, ranks="all", dir=tmp_path, mirror="off", system_metrics=False
        )
        for step in range(40_000):
            run.log({"loss": 1000.0 * rank + (step % 7)}, step=step)
        run.finish()
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1:8080")
    for rank in (0, 1):
        body = client.get("/api/series", params={"key": "loss", "runs": "long", "buckets": "20", "rank": rank}).json()
        drawn = values(body, "long")
        assert body["series"]["long"]["matched"] == 40_000
        assert min(drawn) == 1000.0 * rank and max(drawn) == 1000.0 * rank + 6
