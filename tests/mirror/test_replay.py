"""Replay and its watchdog, in process, against a recording stand-in for wandb (fast; no wandb needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import expertrack
from expertrack.mirror import guard, mirror_status, replay
from expertrack.mirror.state import read_state
from expertrack.mirror.sync import sync_runs
from expertrack.paths import store_path
from expertrack.store import SQLiteStore

from .fakes import FakeHistogram, FakeImage, FakeWandb


def make_run(tracking_dir: Path, steps: int = 30, run_id: str = "run1") -> str:
    run = expertrack.init(
        project="proj",
        name="name-1",
        id=run_id,
        config={"lr": 0.1, "model": {"depth": 2}},
        tags=["moe"],
        group="grp",
        notes="notes",
        dir=tracking_dir,
        mirror="off",
    )
    run.define_metric("val/*", summary="min")
    for s in range(steps):
        row = {"train/loss": 1.0 / (s + 1), "lr": 0.1}
        if s % 10 == 0:
            row["val/loss"] = float("nan") if s == 0 else 2.0 / s
            row["moe/util"] = np.array([0.25, 0.75])
            row["moe/affinity"] = np.arange(6, dtype=np.float32).reshape(2, 3) + s
        run.log(row)
    run.summary["best"] = 0.5
    run.finish()
    return run_id


def local_points(tracking_dir: Path, run_id: str) -> dict[tuple[int, str], float]:
    with SQLiteStore(store_path(tracking_dir)) as store:
        out = {}
        for key in store.scalar_keys(run_id):
            steps, _, values = store.read_scalars(run_id, key)
            out.update({(int(s), key): float(v) for s, v in zip(steps, values)})
        return out


def sent_points(wandb: FakeWandb) -> dict[tuple[int, str], object]:
    out: dict[tuple[int, str], object] = {}
    for step, row in wandb.logged:
        for key, value in row.items():
            assert (step, key) not in out, f"{key} at step {step} sent twice"
            out[(step, key)] = value
    return out


def same(a: object, b: object) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def test_replay_sends_every_step_once_in_order_with_metadata(tracking_dir: Path) -> None:
    run_id = make_run(tracking_dir)
    fake = FakeWandb()
    outcome = guard.mirror_run(store_path(tracking_dir), run_id, fake)
    assert (outcome.state, outcome.cursor, outcome.steps_sent) == ("complete", 29, 30)
    (run,) = fake.runs
    assert run.kwargs["id"] == run_id and run.kwargs["resume"] == "allow"
    assert (run.kwargs["project"], run.kwargs["name"], run.kwargs["group"]) == ("proj", "name-1", "grp")
    assert run.kwargs["tags"] == ["moe"] and run.kwargs["notes"] == "notes"
    assert run.config == {"lr": 0.1, "model": {"depth": 2}}
    assert run.defined == [("val/*", {"summary": "min"})]
    steps = [s for s, _ in run.logged]
    assert steps == sorted(steps) == list(range(30))  # one log call per step, ascending
    sent = sent_points(fake)
    for (step, key), value in local_points(tracking_dir, run_id).items():
        assert same(sent[(step, key)], value)
    assert sent[(10, "moe/util/0")] == 0.25 and sent[(10, "moe/util/1")] == 0.75
    assert isinstance(sent[(10, "moe/affinity")], FakeImage)
    assert all("_timestamp" in row for _, row in run.logged)
    assert run.summary["best"] == 0.5 and run.summary["val/loss"] == {"min": pytest.approx(2 / 20)}
    assert run.exit_code == 0
    with SQLiteStore(store_path(tracking_dir)) as store:
        assert mirror_status(store, run_id) == f"complete (entity/proj/{run_id})"


def test_second_sync_sends_nothing(tracking_dir: Path) -> None:
    run_id = make_run(tracking_dir)
    fake = FakeWandb()
    (first,) = sync_runs(store_path(tracking_dir), [run_id], fake)
    (second,) = sync_runs(store_path(tracking_dir), [run_id], fake)
    assert first.action == "sent" and first.steps_sent == 30
    assert second.action == "up-to-date" and second.steps_sent == 0
    assert len(fake.runs) == 1 and len(fake.logged) == 30


def test_exception_mid_run_records_cursor_then_sync_resumes(tracking_dir: Path) -> None:
    run_id = make_run(tracking_dir)
    failing = FakeWandb(fail_at=12, failure="raise")
    outcome = guard.mirror_run(store_path(tracking_dir), run_id, failing)
    assert (outcome.state, outcome.cursor, outcome.hung) == ("partial", 11, False)
    assert "RuntimeError: injected: W&B failed at step 12" in (outcome.reason or "")
    assert failing.runs[0].exit_code == 1  # W&B was asked to keep what it got
    with SQLiteStore(store_path(tracking_dir)) as store:
        line = mirror_status(store, run_id)
    assert line.startswith("partial up to step 11 (wandb.log raised RuntimeError")
    healthy = FakeWandb()
    (result,) = sync_runs(store_path(tracking_dir), [run_id], healthy)
    assert result.action == "sent" and [s for s, _ in healthy.logged] == list(range(12, 30))
    both = sent_points(failing) | sent_points(healthy)
    assert set(local_points(tracking_dir, run_id)) <= set(both)


def test_hang_mid_run_gives_up_after_the_deadline(tracking_dir: Path) -> None:
    run_id = make_run(tracking_dir)
    hanging = FakeWandb(fail_at=20, failure="hang")
    try:
        outcome = guard.mirror_run(store_path(tracking_dir), run_id, hanging, stall_s=0.5)
        assert (outcome.state, outcome.cursor, outcome.hung) == ("partial", 19, True)
        assert outcome.reason == "W&B did not answer (wandb.log) within 0.5 s"
        with SQLiteStore(store_path(tracking_dir)) as store:
            state = read_state(store, run_id)
        assert state is not None and (state.state, state.cursor_step) == ("partial", 19)
    finally:
        hanging.release.set()  # the abandoned worker returns and must record nothing more
    healthy = FakeWandb()
    (result,) = sync_runs(store_path(tracking_dir), [run_id], healthy)
    assert [s for s, _ in healthy.logged] == list(range(20, 30))
    assert result.action == "sent"


def test_failure_at_init_is_never_started(tracking_dir: Path) -> None:
    run_id = make_run(tracking_dir)
    outcome = guard.mirror_run(store_path(tracking_dir), run_id, FakeWandb(fail_init=True))
    assert (outcome.state, outcome.cursor) == ("failed", None)
    with SQLiteStore(store_path(tracking_dir)) as store:
        assert mirror_status(store, run_id) == (
            "never started (wandb.init raised ConnectionError: injected: W&B unreachable at init)"
        )


def test_run_extended_after_complete_sends_only_the_new_steps(tracking_dir: Path) -> None:
    run_id = make_run(tracking_dir, steps=10)
    fake = FakeWandb()
    list(sync_runs(store_path(tracking_dir), [run_id], fake))
    run = expertrack.init(id=run_id, resume="allow", dir=tracking_dir, mirror="off")
    run.log({"train/loss": 0.01})
    run.finish()
    (result,) = sync_runs(store_path(tracking_dir), [run_id], fake)
    assert result.steps_sent == 1 and [s for s, _ in fake.logged] == [*range(10), 10]


def test_running_runs_are_left_to_the_live_mirror(tracking_dir: Path) -> None:
    run = expertrack.init(project="p", dir=tracking_dir, mirror="off")
    run.log({"a": 1.0})
    run.flush()
    (result,) = sync_runs(store_path(tracking_dir), [run.id], FakeWandb())
    assert result.action == "skipped" and "still running" in result.detail
    run.finish()


def test_histogram_for_large_arrays(tracking_dir: Path) -> None:
    run = expertrack.init(project="p", id="h1", dir=tracking_dir, mirror="off")
    run.log({"weights": np.linspace(-1, 1, 1000)})
    run.finish()
    fake = FakeWandb()
    guard.mirror_run(store_path(tracking_dir), "h1", fake)
    ((_, row),) = fake.logged
    assert isinstance(row["weights"], FakeHistogram)
    counts, edges = row["weights"].np_histogram
    assert counts.sum() == 1000 and edges[0] == -1 and edges[-1] == 1


def test_rows_are_built_in_windows(tracking_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "WINDOW_STEPS", 7)
    run_id = make_run(tracking_dir)
    fake = FakeWandb()
    guard.mirror_run(store_path(tracking_dir), run_id, fake)
    assert [s for s, _ in fake.logged] == list(range(30))
    assert sent_points(fake).keys() >= {(s, "moe/util/1") for s in (0, 10, 20)}
    assert set(local_points(tracking_dir, run_id)) <= set(sent_points(fake))
