"""A chart of many runs reads one key of all of them together (one store query, not one per run): its answer is
each run's own answer, from SQLite and from PostgreSQL alike, fresh or from the server's cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from starlette.testclient import TestClient

import expertrack
from expertrack.dashboard.app import create_app
from tests.dashboard.builders import spiky_run
from tests.pg import PostgresServer, copy_into_postgres


def client_for(location: Any) -> TestClient:
    return TestClient(create_app(location), base_url="http://127.0.0.1:8080")


def test_compare_and_grouped_charts_of_many_runs_answer_each_runs_own_series(
    tracking_dir: Path, postgres_server: PostgresServer
) -> None:
    long_id = spiky_run(tracking_dir, 40_000, {12_345: 50.0, 30_000: -50.0}, name="long")  # charted from levels
    short_ids = []
    for seed in range(3):
        with expertrack.init(project="bench", dir=tracking_dir, mirror="off", config={"lr": seed % 2}) as run:
            for step in range(300 + 50 * seed):
                run.log({"train/loss": float(np.cos(step / 9.0 + seed)) if step != 77 else np.nan}, step=step)
            short_ids.append(run.id)
    with expertrack.init(project="bench", dir=tracking_dir, mirror="off") as keyless:
        keyless.log({"other": 1.0}, step=0)
    ids = [long_id, *short_ids, keyless.id]
    url = postgres_server.new_database()
    copy_into_postgres(tracking_dir, url)
    compare = {"key": "train/loss", "runs": ",".join(ids), "buckets": 50}
    grouped = {"key": "train/loss", "runs": ",".join(short_ids), "by": "config.lr"}
    answers = {}
    for location in (tracking_dir, url):
        client = client_for(location)
        first = client.get("/api/series", params=compare).json()
        assert first == client.get("/api/series", params=compare).json()  # the second from the server's cache
        assert list(first["series"]) == ids[:-1]  # the run without the key has no series
        for run_id in ids:  # each run alone, on a server of its own (nothing cached): the same answer
            alone = client_for(location).get("/api/series", params={**compare, "runs": run_id}).json()
            assert alone["series"].get(run_id) == first["series"].get(run_id)
        groups = client.get("/api/grouped", params=grouped).json()
        assert [g["n"] for g in groups["groups"]] == [2, 1]
        answers[str(location)] = (first, groups)
    assert answers[str(tracking_dir)] == answers[url]
    assert first["series"][long_id]["matched"] == 40_000
