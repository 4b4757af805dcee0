"""The system-metrics sampler: its series in a real store with sensible values, a sample at start and one at
finish(), its thread gone after finish(), off with one setting, and out of the training history."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import expertrack
from expertrack.system import sampling_interval
from expertrack.system.gpu import visible_indices
from tests.conftest import run_python

psutil = pytest.importorskip("psutil")

HOST_KEYS = {
    "system/cpu_percent",
    "system/memory_percent",
    "system/memory_used_gb",
    "system/process/cpu_percent",
    "system/process/rss_gb",
    "system/process/threads",
}


def sampler_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "expertrack-system"]


def wait_for_points(directory: Path, run_id: str, key: str, count: int, timeout: float = 60) -> None:
    """Poll the store (the writer flushes every second) until ``key`` has ``count`` points."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = {r.id: r for r in expertrack.Api(directory).runs()}
        if run_id in runs and key in runs[run_id].metric_keys() and runs[run_id].point_count(key) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} did not reach {count} points in {timeout} s")


def test_series_hold_sensible_values_and_stay_out_of_the_history(tracking_dir: Path) -> None:
    run = expertrack.init(project="sys", system_metrics=0.05)
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    wait_for_points(tracking_dir, run.id, "system/cpu_percent", 3)
    finished_at = time.time()
    run.finish()
    assert sampler_threads() == []

    stored = expertrack.Api(tracking_dir).run(run.id)
    assert set(stored.metric_keys()) >= HOST_KEYS
    steps, times, memory = stored.scalars("system/memory_percent")
    assert steps.tolist() == list(range(len(steps)))  # the sample's number, not a training step
    assert (times[1:] >= times[:-1]).all() and times[-1] >= finished_at  # the last one was taken by finish()
    assert ((memory > 0) & (memory <= 100)).all()
    total_gb = psutil.virtual_memory().total / 2**30
    for key, low, high in [
        ("system/memory_used_gb", 0.0, total_gb),
        ("system/process/rss_gb", 0.001, total_gb),  # a Python process with this package loaded: megabytes
        ("system/process/threads", 2, 10_000),  # at least the training thread and the sampler
        ("system/cpu_percent", 0, 100),
        ("system/process/cpu_percent", 0, 100 * (os.cpu_count() or 1)),
    ]:
        values = stored.scalars(key)[2]
        assert ((values >= low) & (values <= high)).all(), (key, values)
    assert stored.scalars("system/cpu_percent")[0][0] == 1  # none at sample 0: psutil needs two readings
    history = stored.history()
    assert list(history.columns) == ["_step", "_timestamp", "loss"] and history["_step"].tolist() == [0, 1, 2]
    system = stored.history(stream="system")
    assert set(system.columns) >= HOST_KEYS and len(system) == len(steps)


def test_default_is_one_sample_at_start_and_one_at_finish(tracking_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a fresh process with nothing set: sampling is on, every 10 s, so a short run gets exactly two samples
    monkeypatch.delenv("EXPERTRACK_SYSTEM_METRICS")
    code = (
        "import threading, expertrack\n"
        "run = expertrack.init(project='sys')\n"
        "run.log({'loss': 1.0})\n"
        "print(run.id)\n"
        "run.finish()\n"
        "print([t.name for t in threading.enumerate() if t.name == 'expertrack-system'])\n"
    )
    proc = run_python(code)
    run_id, threads = proc.stdout.split()
    assert threads == "[]"  # the sampler's thread ended with finish()
    stored = expertrack.Api(tracking_dir).run(run_id)
    assert stored.scalars("system/memory_percent")[0].tolist() == [0, 1]
    assert stored.scalars("system/cpu_percent")[0].tolist() == [1]


@pytest.mark.parametrize("setting", ["env", "argument"])
def test_off_with_one_setting(tracking_dir: Path, monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    monkeypatch.setenv("EXPERTRACK_SYSTEM_METRICS", "off" if setting == "env" else "on")
    run = expertrack.init(project="sys", system_metrics=False if setting == "argument" else None)
    assert sampler_threads() == []
    run.log({"loss": 1.0})
    run.finish()
    assert expertrack.Api(tracking_dir).run(run.id).metric_keys() == ["loss"]


def test_only_the_recording_rank_samples(tracking_dir: Path) -> None:
    quiet = expertrack.init(project="sys", rank=1, world_size=2, system_metrics=0.05)
    assert sampler_threads() == []
    quiet.finish()
    assert expertrack.Api(tracking_dir).runs() == []


def test_a_resumed_run_goes_on_after_its_last_sample(tracking_dir: Path) -> None:
    run = expertrack.init(project="sys", id="sysrun01", system_metrics=30)
    run.finish()
    again = expertrack.init(project="sys", id="sysrun01", resume="allow", system_metrics=30)
    again.finish()
    steps = expertrack.Api(tracking_dir).run("sysrun01").scalars("system/memory_percent")[0]
    assert steps.tolist() == [0, 1, 2, 3]


def test_settings_and_their_errors() -> None:
    assert sampling_interval(True) == sampling_interval("on") == 10.0
    assert sampling_interval(2) == sampling_interval("2") == 2.0
    assert sampling_interval(False) is sampling_interval("off") is sampling_interval(0) is None
    with pytest.raises(ValueError, match="use on, off or a number of seconds"):
        sampling_interval("often")
    with pytest.raises(ValueError, match="positive number of seconds"):
        sampling_interval(-1)


def test_cuda_visible_devices_choose_the_gpus() -> None:
    assert visible_indices(None, 4) == [0, 1, 2, 3]
    assert visible_indices("", 4) == []
    assert visible_indices("2,0", 4) == [2, 0]
    assert visible_indices("1,7,2", 4) == [1]  # CUDA stops at the first index that does not exist
    assert visible_indices("GPU-8f2a", 2) == [0, 1]


def test_child_processes_are_counted_together(tracking_dir: Path) -> None:
    # a child holding 200 MiB (a DataLoader worker, or the program `expertrack run` wraps)
    code = "import sys; block = b'x' * (200 << 20); print('ready', flush=True); sys.stdin.read()"
    # children of earlier tests may live on (multiprocessing's resource tracker after a spawn): count from them
    before = len(psutil.Process().children(recursive=True))
    run = expertrack.init(project="sys", system_metrics=0.05)
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            run.flush()
            stored = expertrack.Api(tracking_dir).run(run.id)
            keys = stored.metric_keys()
            if "system/children/rss_gb" in keys and stored.scalars("system/children/rss_gb")[2].max() >= 0.19:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the child's memory never showed in system/children/rss_gb")
    finally:
        child.communicate("", timeout=60)
    run.finish()
    stored = expertrack.Api(tracking_dir).run(run.id)
    assert stored.scalars("system/children/count")[2].max() >= before + 1
    assert (stored.scalars("system/children/cpu_percent")[2] >= 0).all()
    assert stored.scalars("system/children/count")[2][-1] == before  # ours is gone by the sample at finish()
