"""End to end, in W&B's offline mode: a training child with the live mirror, faults injected into wandb, then
``expertrack sync``; the produced .wandb logs are read back with our reader and W&B's protobufs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from expertrack.mirror.state import read_state
from expertrack.mirror.wandb_log import read_run
from expertrack.paths import store_path
from expertrack.store import SQLiteStore

from ..conftest import expertrack_cli, run_python
from .wandb_offline import offline_env, wait_for_mirror, wandb_logs

pytest.importorskip("wandb")
pytestmark = pytest.mark.e2e

STEPS = 120
TRAIN = f"""
import time, numpy as np, expertrack
run = expertrack.init(project="e2e", name="live-run", id="live1", group="g", tags=["moe", "live"],
                      notes="mirrored", config={{"lr": 3e-4, "model": {{"experts": 4}}}}, mirror="auto")
run.define_metric("val/*", summary="min")
for s in range({STEPS}):
    row = {{"train/loss": 1.0 / (s + 1), "tokens": s * 512}}
    if s % 20 == 0:
        row["val/loss"] = 2.0 / (s + 1)
        row["moe/util"] = np.array([0.1, 0.2, 0.3, 0.4]) + s
        row["moe/affinity"] = np.arange(12.0).reshape(4, 3) * s
    run.log(row)
    time.sleep(0.01)
run.summary["best"] = 0.25
run.finish()
print("trained", run.id)
"""

# A wandb that is the real one, except that Run.log raises or hangs from a step on (FAKE_WANDB_FAIL=raise:40).
FAULTY_WANDB = """
import importlib, os, sys, threading
_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
del sys.modules[__name__]
_real = importlib.import_module("wandb")
_mode, _, _at = os.environ["FAKE_WANDB_FAIL"].partition(":")
_init = _real.init

def _init_with_faults(*args, **kwargs):
    run = _init(*args, **kwargs)
    log = run.log
    def faulty_log(data, step=None, **kw):
        if step is not None and step >= int(_at):
            if _mode == "raise":
                raise RuntimeError(f"injected W&B failure at step {step}")
            threading.Event().wait()
        return log(data, step=step, **kw)
    run.log = faulty_log
    return run

_real.init = _init_with_faults
"""


def local_run(tracking_dir: Path, run_id: str) -> tuple[dict[tuple[int, str], float], object]:
    with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
        points: dict[tuple[int, str], float] = {}
        for key in store.scalar_keys(run_id):
            steps, _, values = store.read_scalars(run_id, key)
            points.update({(int(s), key): float(v) for s, v in zip(steps, values)})
        for key in store.array_keys(run_id):
            for step, _, value in store.read_arrays(run_id, key):
                if value.ndim == 1:
                    points.update({(step, f"{key}/{i}"): float(v) for i, v in enumerate(value)})
                else:
                    points[(step, key)] = math.inf  # a heatmap image: checked by kind below
        return points, store.run(run_id)


def wandb_points(wandb_dir: Path) -> dict[tuple[int, str], object]:
    """Every (step, key) -> value across all .wandb logs; fails if any is there twice."""
    out: dict[tuple[int, str], object] = {}
    for log in wandb_logs(wandb_dir):
        for row in read_run(log, strict=True).history:
            for key, value in row.items():
                if not key.startswith("_"):
                    assert (row["_step"], key) not in out, f"{key} at step {row['_step']} is in W&B twice"
                    out[(row["_step"], key)] = value
    return out


def assert_wandb_has_everything(tracking_dir: Path, wandb_dir: Path, run_id: str) -> None:
    local, record = local_run(tracking_dir, run_id)
    remote = wandb_points(wandb_dir)
    assert set(remote) == set(local)
    for point, value in local.items():
        if value == math.inf:
            assert remote[point]["_type"] == "image-file"  # type: ignore[index]
        else:
            assert remote[point] == value or (math.isnan(value) and math.isnan(remote[point]))  # type: ignore
    final = read_run(wandb_logs(wandb_dir)[-1], strict=True)
    assert (final.run_id, final.project, final.name, final.group) == (run_id, "e2e", "live-run", "g")
    assert final.tags == ["moe", "live"] and final.notes == "mirrored"
    assert final.config == record.config == {"lr": 3e-4, "model": {"experts": 4}}  # type: ignore[attr-defined]
    for key, value in record.summary.items():  # type: ignore[attr-defined]
        assert final.summary[key] == value, key
    assert final.summary["best"] == 0.25
    assert final.metrics[0].glob_name == "val/*" and final.metrics[0].summary == ["min"]


def test_live_mirror_then_sync_sends_nothing_twice(tmp_path: Path, tracking_dir: Path) -> None:
    wandb_dir = tmp_path / "wandb"
    env = offline_env(wandb_dir, EXPERTRACK_DIR=str(tracking_dir))
    proc = run_python(TRAIN, env=env)
    assert "mirroring run live1" in proc.stderr
    wait_for_mirror(tracking_dir, "live1")
    with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
        state = read_state(store, "live1")
    assert state is not None and (state.state, state.cursor_step) == ("complete", STEPS - 1)
    assert_wandb_has_everything(tracking_dir, wandb_dir, "live1")
    logs_before = wandb_logs(wandb_dir)
    again = expertrack_cli("sync", "--all", env=env)
    assert again.returncode == 0, again.stderr
    assert "up-to-date" in again.stdout
    assert wandb_logs(wandb_dir) == logs_before  # no new W&B run directory: nothing sent twice


@pytest.mark.parametrize("failure", ["raise", "hang"])
def test_wandb_failing_mid_run_then_sync_completes(tmp_path: Path, tracking_dir: Path, failure: str) -> None:
    wandb_dir = tmp_path / "wandb"
    shim = tmp_path / "shim"
    (shim / "wandb").mkdir(parents=True)
    (shim / "wandb" / "__init__.py").write_text(FAULTY_WANDB)
    env = offline_env(
        wandb_dir,
        EXPERTRACK_DIR=str(tracking_dir),
        PYTHONPATH=str(shim),
        FAKE_WANDB_FAIL=f"{failure}:40",
        EXPERTRACK_MIRROR_STALL_S="2",
    )
    proc = run_python(TRAIN, env=env)
    assert "trained live1" in proc.stdout
    wait_for_mirror(tracking_dir, "live1")
    local, record = local_run(tracking_dir, "live1")
    assert record.state == "finished" and max(s for s, _ in local) == STEPS - 1  # type: ignore[attr-defined]
    with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
        state = read_state(store, "live1")
    assert state is not None and (state.state, state.cursor_step) == ("partial", 39)
    expected = "injected W&B failure at step 40" if failure == "raise" else "did not answer (wandb.log) within 2 s"
    assert expected in (state.reason or "")
    show = expertrack_cli("show", "live1", env=env)
    assert "partial up to step 39" in show.stdout
    clean_env = offline_env(wandb_dir, EXPERTRACK_DIR=str(tracking_dir))
    synced = expertrack_cli("sync", "live1", env=clean_env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "80 steps sent" in synced.stdout
    assert len(wandb_logs(wandb_dir)) == 2  # the mirror's piece (steps 0-39) and sync's (40 on)
    assert_wandb_has_everything(tracking_dir, wandb_dir, "live1")


LATE_DEFINITION = """
import time, expertrack
from expertrack.mirror.state import read_state
from expertrack.paths import store_path
from expertrack.store import SQLiteStore

run = expertrack.init(project="e2e", name="late-defs", id="late1", mirror="auto")
run.log({"train/loss": 1.0})
deadline = time.monotonic() + 60
while time.monotonic() < deadline:  # wait until the mirror has opened the run in W&B
    with SQLiteStore(store_path(run.dir), readonly=True) as store:
        if read_state(store, "late1") is not None:
            break
    time.sleep(0.05)
else:
    raise SystemExit("the mirror never opened the run")
run.define_metric("val/*", summary="min")
for s in range(1, 20):
    run.log({"train/loss": 1.0 / (s + 1), "val/loss": 2.0 / (s + 1)})
    time.sleep(0.01)
run.finish()
"""


def test_a_metric_defined_after_the_mirror_opened_the_run_still_reaches_wandb(
    tmp_path: Path, tracking_dir: Path
) -> None:
    wandb_dir = tmp_path / "wandb"
    env = offline_env(wandb_dir, EXPERTRACK_DIR=str(tracking_dir))
    run_python(LATE_DEFINITION, env=env)
    wait_for_mirror(tracking_dir, "late1")
    final = read_run(wandb_logs(wandb_dir)[-1], strict=True)
    assert [(m.glob_name, m.summary) for m in final.metrics] == [("val/*", ["min"])]
