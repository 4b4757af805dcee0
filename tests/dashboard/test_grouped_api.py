"""The dashboard's chart answers for comparing runs like a paper: grouped mean and band, compressed answers,
only the arrays a chart draws, and the environment variables hidden unless asked; over a real store."""

from __future__ import annotations

import base64
import gzip
import http.client
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

import expertrack
from expertrack.dashboard.app import create_app
from tests.dashboard.builders import dense_run, seed_runs, seed_value, spiky_run
from tests.dashboard.processes import Server


def client_for(directory: Path) -> TestClient:
    return TestClient(create_app(directory), base_url="http://127.0.0.1:8080")


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8")


def test_grouped_by_config_key_gives_each_groups_mean_and_sd_band(tracking_dir: Path) -> None:
    ids = seed_runs(tracking_dir)
    body = client_for(tracking_dir).get(
        "/api/grouped", params={"key": "train/loss", "runs": ",".join(ids), "by": "config.lr"}
    )
    assert body.status_code == 200
    groups = body.json()["groups"]
    assert [g["label"] for g in groups] == ["lr=0.001", "lr=0.003"]
    assert [g["n"] for g in groups] == [3, 3] and groups[0]["runs"] == ids[:3]
    steps = np.arange(40)
    for group, lr in zip(groups, (1e-3, 3e-3)):
        assert unpack(group["steps"]).tolist() == steps.tolist()
        mean = [seed_value(s, lr, 1) for s in steps]  # seeds 0, 1, 2: the mean is seed 1's value
        assert np.allclose(unpack(group["mean"]), mean)
        assert np.allclose(unpack(group["low"]), np.array(mean) - 0.1)  # s.d. (ddof=1) of 0, 0.1, 0.2
        assert np.allclose(unpack(group["high"]), np.array(mean) + 0.1)


def test_grouped_min_max_band_and_grouping_by_group(tracking_dir: Path) -> None:
    ids = seed_runs(tracking_dir, lrs=(1e-3,), seeds=3)
    dense = dense_run(tracking_dir)  # group "sweep": its own group of one
    params = {"key": "train/loss", "runs": ",".join([*ids, dense]), "by": "group", "band": "minmax"}
    groups = client_for(tracking_dir).get("/api/grouped", params=params).json()["groups"]
    assert [(g["label"], g["n"]) for g in groups] == [("lr-0.001", 3), ("sweep", 1)]
    assert np.allclose(unpack(groups[0]["low"]), [seed_value(s, 1e-3, 0) for s in range(40)])
    assert np.allclose(unpack(groups[0]["high"]), [seed_value(s, 1e-3, 2) for s in range(40)])
    single = groups[1]  # one run: its band is the line itself
    assert np.array_equal(unpack(single["low"]), unpack(single["mean"]))


def test_grouped_runs_at_different_steps_are_averaged_where_all_have_points(tracking_dir: Path) -> None:
    ids = []
    for seed, (start, stop, every) in enumerate([(0, 100, 1), (10, 80, 2)]):
        with expertrack.init(project="p", name=f"s{seed}", dir=tracking_dir, config={"lr": 1}, mirror="off") as run:
            for step in range(start, stop, every):
                run.log({"loss": float(step + seed)}, step=step)
            ids.append(run.id)
    (group,) = (
        client_for(tracking_dir)
        .get("/api/grouped", params={"key": "loss", "runs": ",".join(ids), "by": "config.lr"})
        .json()["groups"]
    )
    steps = unpack(group["steps"])
    assert steps[0] == 10 and steps[-1] == 78  # never extrapolated past the shorter run
    assert np.allclose(unpack(group["mean"]), steps + 0.5)


def test_grouped_downsampling_keeps_spikes_of_the_mean_and_the_band(tracking_dir: Path) -> None:
    a = spiky_run(tracking_dir, 20_000, {5_000: 50.0}, name="a")
    b = spiky_run(tracking_dir, 20_000, {15_000: -30.0}, name="b")
    params = {"key": "train/loss", "runs": f"{a},{b}", "by": "group", "band": "minmax", "buckets": 50}
    (group,) = client_for(tracking_dir).get("/api/grouped", params=params).json()["groups"]
    steps, high, low = unpack(group["steps"]), unpack(group["high"]), unpack(group["low"])
    assert group["matched"] == 20_000 and group["count"] <= 3 * 4 * 50
    assert high.max() == 50.0 and steps[high.argmax()] == 5_000
    assert low.min() == -30.0 and steps[low.argmin()] == 15_000


@pytest.mark.parametrize(
    ("params", "wanted"),
    [
        ({"key": "train/loss", "runs": "RUN", "by": "color"}, "by"),
        ({"key": "train/loss", "runs": "RUN", "by": "config."}, "by"),
        ({"key": "train/loss", "runs": "RUN", "by": "group", "band": "iqr"}, "band"),
        ({"key": "train/loss", "by": "group"}, "runs"),
        ({"runs": "RUN", "by": "group"}, "key"),
    ],
)
def test_grouped_bad_requests_say_what_was_wrong(tracking_dir: Path, params: dict, wanted: str) -> None:
    run_id = dense_run(tracking_dir)
    params = {k: v.replace("RUN", run_id) for k, v in params.items()}
    response = client_for(tracking_dir).get("/api/grouped", params=params)
    assert response.status_code == 400 and response.json()["error"].startswith(wanted)


def test_a_step_axis_answer_carries_no_times_and_a_time_axis_one_does(tracking_dir: Path) -> None:
    run_id = dense_run(tracking_dir)
    client = client_for(tracking_dir)
    on_steps = client.get("/api/series", params={"key": "train/loss", "runs": run_id}).json()["series"][run_id]
    assert set(on_steps) == {"matched", "count", "last_step", "steps", "values"}
    on_time = client.get("/api/series", params={"key": "train/loss", "runs": run_id, "x": "time"}).json()
    times = unpack(on_time["series"][run_id]["times"])
    assert len(times) == 60 and np.all(np.diff(times) >= 0)


def test_answers_are_gzipped_for_a_client_that_accepts_it(tracking_dir: Path) -> None:
    """Over real HTTP to `expertrack ui`: gzip only when asked, and the same JSON either way."""
    run_id = spiky_run(tracking_dir, 5_000, {})
    server = Server(tracking_dir)
    try:
        path = f"/api/series?key=train/loss&runs={run_id}&buckets=1000"
        answers = {}
        for accept in ("gzip", None):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", path, headers={"Accept-Encoding": accept} if accept else {})
            response = conn.getresponse()
            answers[accept] = (response.getheader("content-encoding"), response.read())
            conn.close()
    finally:
        server.stop()
    encoding, packed = answers["gzip"]
    plain_encoding, plain = answers[None]
    assert encoding == "gzip" and plain_encoding is None
    assert gzip.decompress(packed) == plain and len(packed) < 0.8 * len(plain)


def test_a_run_that_logs_more_is_read_afresh(tracking_dir: Path) -> None:
    """The server keeps decoded series between requests: a run that logged since must not be answered stale."""
    client = client_for(tracking_dir)
    run = expertrack.init(project="p", name="growing", dir=tracking_dir, mirror="off")
    for step in range(100):
        run.log({"loss": float(step)}, step=step)
    run.flush()
    first = client.get("/api/series", params={"key": "loss", "runs": run.id}).json()["series"][run.id]
    for step in range(100, 150):
        run.log({"loss": float(step)}, step=step)
    run.flush()
    again = client.get("/api/series", params={"key": "loss", "runs": run.id}).json()["series"][run.id]
    run.finish()
    final = client.get("/api/series", params={"key": "loss", "runs": run.id}).json()["series"][run.id]
    # flush() writes the open row of log(step=N) too (issue 12), so each read sees every step logged before it
    assert (first["count"], again["count"], final["count"]) == (100, 150, 150)
    # a running run's held points are extended from its last held step: every point once, in order
    assert unpack(again["steps"]).tolist() == list(range(150)) == unpack(again["values"]).tolist()
    assert unpack(final["values"]).tolist() == [float(s) for s in range(150)]


def test_run_detail_hides_environment_variables_unless_asked(tracking_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("EXPERTRACK_TEST_VISIBLE", "shown-only-on-request")
    run_id = dense_run(tracking_dir)
    client = client_for(tracking_dir)
    detail = client.get(f"/api/runs/{run_id}").json()
    assert "env" not in detail["environment"] and detail["env_count"] > 0
    assert "shown-only-on-request" not in client.get(f"/api/runs/{run_id}").text
    full = client.get(f"/api/runs/{run_id}", params={"env": "1"}).json()
    assert full["environment"]["env"]["EXPERTRACK_TEST_VISIBLE"] == "shown-only-on-request"
    assert len(full["environment"]["env"]) == detail["env_count"]


@pytest.mark.parametrize("band", ["std", "minmax"])
def test_the_blocked_aggregation_gives_the_figures_numbers_bit_for_bit(band: str) -> None:
    """Seeds at the same steps take groups.aggregate's block-wise path; a group on the page and the same group
    in a report figure (seeds.spread) must be the same floats, across block edges and for one run alone."""
    from expertrack.dashboard.groups import AGGREGATE_BLOCK, aggregate
    from expertrack.seeds import spread

    rng = np.random.default_rng(7)
    for runs, points in ((1, 10), (3, AGGREGATE_BLOCK), (4, 2 * AGGREGATE_BLOCK + 5)):
        steps = np.arange(points, dtype=np.int64) * 10
        curves = [(steps.copy(), rng.standard_normal(points) * 10.0 ** rng.integers(-3, 4)) for _ in range(runs)]
        curve = spread(curves)
        expected = (curve.x, curve.mean, *curve.band(band))
        assert all(np.array_equal(a, b) for a, b in zip(aggregate(curves, band), expected, strict=True))
