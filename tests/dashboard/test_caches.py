"""The dashboard's caches of a running run: what they fold in or extend must follow a value logged again at the
last step they saw (the later value replaces the earlier)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.dashboard.cache import SeriesCache
from expertrack.dashboard.data import RowCache


def test_runs_table_last_value_follows_a_value_logged_again_at_the_last_step(tracking_dir: Path) -> None:
    """The runs table folds a running run's new points into its last/best; a value logged again at the last
    step it saw (replacing it) must show too, not only points after that step."""
    run = expertrack.init(project="levels", mirror="off")
    for step in range(10):
        run.log({"loss": 5.0 - step * 0.1, "acc": 0.9 - step * 0.01}, step=step)  # best loss last, best acc first
    run.flush()
    rows = RowCache()
    api = expertrack.Api(tracking_dir)
    assert rows.row(api.run(run.id), ["loss", "acc"])["metrics"]["loss"]["last"] == pytest.approx(4.1)
    api.close()
    run.log({"loss": 0.5, "acc": 0.95}, step=9)  # step 9 was written already: these replace it
    run.flush()
    api = expertrack.Api(tracking_dir)
    metrics = rows.row(api.run(run.id), ["loss", "acc"])["metrics"]
    api.close()
    run.finish()
    assert [metrics[k][f] for k in ("loss", "acc") for f in ("last", "last_step", "best")] == [
        0.5,
        9,
        0.5,
        0.95,
        9,
        0.95,
    ]


def test_series_cache_extends_with_a_value_logged_again_at_its_last_step(tracking_dir: Path) -> None:
    run = expertrack.init(project="caches", mirror="off")
    for step in range(10):
        run.log({"loss": float(step)}, step=step)
    run.flush()
    cache = SeriesCache()
    api = expertrack.Api(tracking_dir)
    assert cache.scalars(api.run(run.id), "loss")[2].tolist() == [float(s) for s in range(10)]
    api.close()
    run.log({"loss": -1.0}, step=9)  # replaces step 9
    run.log({"loss": 10.0}, step=10)
    run.flush()
    api = expertrack.Api(tracking_dir)
    steps, _times, values = cache.scalars(api.run(run.id), "loss")
    api.close()
    run.finish()
    assert steps.tolist() == list(range(11))
    assert np.array_equal(values, [*map(float, range(9)), -1.0, 10.0])


def test_series_held_without_times_is_read_again_for_a_time_axis(tracking_dir: Path) -> None:
    run = expertrack.init(project="caches", mirror="off")
    for step in range(100):
        run.log({"loss": float(step)}, step=step)
    run.finish()
    cache = SeriesCache()
    api = expertrack.Api(tracking_dir)
    stored = api.run(run.id).scalars("loss")
    assert cache.scalars(api.run(run.id), "loss", times=False)[1] is None  # a step axis: times not read
    steps, times, _values = cache.scalars(api.run(run.id), "loss")  # a time axis then asks for them
    api.close()
    assert np.array_equal(times, stored[1]) and np.array_equal(steps, stored[0])


def test_the_caches_of_a_running_run_follow_the_store_without_waiting_for_its_heartbeat(tracking_dir: Path) -> None:
    """The writer rewrites a run's heartbeat at most every 2 s but stores its points every 0.5 s: a point in the
    store must be in the next chart answer and the next runs table (whose last step the live charts follow),
    not one heartbeat later."""
    run = expertrack.init(project="caches", mirror="off")
    for step in range(10):
        run.log({"loss": float(step)}, step=step)
    run.flush()  # rewrites the heartbeat; the background flushes of the next point do not (within 2 s)
    cache, rows = SeriesCache(), RowCache()
    api = expertrack.Api(tracking_dir)
    assert len(cache.scalars(api.run(run.id), "loss")[0]) == 10
    assert rows.row(api.run(run.id), ["loss"])["last_step"] == 9
    api.close()
    run.log({"loss": 10.0}, step=10)  # no flush(): the writer's own flush stores it
    deadline = time.monotonic() + 30
    while True:
        api = expertrack.Api(tracking_dir)
        if api.run(run.id).last_step() == 10:
            break
        api.close()
        assert time.monotonic() < deadline, "the writer did not store step 10 within 30 s"
        time.sleep(0.05)
    steps = cache.scalars(api.run(run.id), "loss")[0]
    row = rows.row(api.run(run.id), ["loss"])
    api.close()
    run.finish()
    assert steps.tolist() == list(range(11))
    assert row["last_step"] == 10 and row["metrics"]["loss"]["last"] == 10.0
