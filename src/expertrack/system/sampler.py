"""The sampler thread: one sample when the run starts, one every ``interval`` seconds, one when it finishes.

It never runs on the training thread and never waits on it: each sample is a few psutil and NVML calls (well
under a millisecond of CPU each on a 2-core machine; benchmarks/distributed_overhead.py prints the cost), handed
to the run's writer as one row. System series are not part of the run's steps: their step is the sample's number
(0, 1, 2, ..., going on after the last one when a run is resumed) and their time the wall clock, so they never
move or split the rows that ``log()`` makes (``history()`` leaves them out unless asked); plot them against time.

Names (all under ``system/``): ``cpu_percent`` and ``memory_percent`` of the node, ``memory_used_gb``,
``process/cpu_percent`` (of one core: 200 is two cores busy), ``process/rss_gb``, ``process/threads``; the same
for all its descendant processes together, ``children/cpu_percent``, ``children/rss_gb``, ``children/count``; per GPU
``gpu/<index>/...`` (see :mod:`expertrack.system.gpu`). The first sample has no CPU percentages: psutil measures
them between two calls.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

from expertrack.notify import Notifier

if TYPE_CHECKING:
    from expertrack.run import Run

DEFAULT_INTERVAL_S = 10.0
PREFIX = "system/"
_GB = float(1 << 30)
_missing = Notifier()  # "psutil is not installed" is said once per process, not once per run


def sampling_interval(setting: bool | float | str | None) -> float | None:
    """Seconds between samples from ``init(system_metrics=...)``, else ``$EXPERTRACK_SYSTEM_METRICS``; None is off.

    True (or unset) means every 10 s; False, 0, "off" or "false" turn sampling off; a number is the interval.
    """
    if setting is None:
        setting = os.environ.get("EXPERTRACK_SYSTEM_METRICS", "").strip() or True
    if isinstance(setting, str):
        text = setting.lower()
        if text in ("off", "false", "no", "0"):
            return None
        if text in ("on", "true", "yes"):
            return DEFAULT_INTERVAL_S
        try:
            setting = float(text)
        except ValueError:
            raise ValueError(
                f"system metrics setting {setting!r}: use on, off or a number of seconds between samples"
            ) from None
    if setting is True:
        return DEFAULT_INTERVAL_S
    if setting is False or setting == 0:
        return None
    if not setting > 0:
        raise ValueError(f"system metrics interval must be a positive number of seconds, not {setting!r}")
    return float(setting)


class SystemSampler:
    """Samples system metrics into ``run`` on a daemon thread until ``stop()``, which takes a last sample."""

    def __init__(self, run: Run, interval: float = DEFAULT_INTERVAL_S, first_sample: int = 0) -> None:
        self.run = run
        self.interval = interval
        self.samples = 0
        self._index = first_sample  # the next sample's number (a resumed run goes on after its last one)
        self.cpu_seconds = 0.0  # the thread's own CPU time spent sampling (benchmarks report it)
        self._stop = threading.Event()
        self._psutil: Any = None
        self._process: Any = None
        self._children: dict[int, Any] = {}  # pid -> psutil.Process, kept for CPU percentages between samples
        self._gpus: Any = None
        self._thread = threading.Thread(target=self._loop, name="expertrack-system", daemon=True)

    def start(self) -> SystemSampler:
        """Start the thread (its first sample is taken at once) and return self."""
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        """Whether the sampling thread is still running."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Take the last sample and end the thread (waits at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        self._open()
        if self._psutil is None and self._gpus is None:
            return
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                self._sample()  # the one at finish()
                break
        if self._gpus is not None:
            self._gpus.close()

    def _open(self) -> None:
        try:
            import psutil
        except ImportError:
            _missing.once(
                "psutil",
                "system metrics: psutil is not installed, so CPU and memory are not recorded "
                "(pip install 'expertrack[system]'; or turn sampling off with EXPERTRACK_SYSTEM_METRICS=off)",
            )
        else:
            self._psutil = psutil
            self._process = psutil.Process()
            self._process.cpu_percent(None)  # the first call only starts psutil's measuring interval
            psutil.cpu_percent(None)
        from expertrack.system.gpu import open_gpus

        self._gpus = open_gpus()

    def _sample(self) -> None:
        start = time.thread_time()
        values = self._host_values() if self._psutil is not None else {}
        if self._gpus is not None:
            values.update(self._gpus.sample())
        if values:
            self.run._log_series({PREFIX + k: v for k, v in values.items()}, self._index, time.time())
            self.samples += 1
            self._index += 1
        self.cpu_seconds += time.thread_time() - start

    def _host_values(self) -> dict[str, float]:
        psutil, process = self._psutil, self._process
        memory = psutil.virtual_memory()
        values = {
            "memory_percent": float(memory.percent),
            "memory_used_gb": (memory.total - memory.available) / _GB,
            "process/rss_gb": process.memory_info().rss / _GB,
            "process/threads": float(process.num_threads()),
        }
        if self.samples:  # psutil's percentages are over the time since the previous call
            values["cpu_percent"] = float(psutil.cpu_percent(None))
            values["process/cpu_percent"] = float(process.cpu_percent(None))
        values.update(self._children_values())
        return values

    def _children_values(self) -> dict[str, float]:
        """This process's descendants together: DataLoader workers, or the program ``expertrack run`` wraps.

        A child's CPU percentage needs two readings of the same psutil object, so the objects are kept between
        samples; a child seen for the first time counts from the next sample on."""
        psutil = self._psutil
        try:
            current = {child.pid: child for child in self._process.children(recursive=True)}
        except psutil.Error:
            return {}
        known = self._children
        self._children = {pid: known.get(pid, child) for pid, child in current.items()}
        rss, cpu = 0, 0.0
        for pid, child in self._children.items():
            try:
                rss += child.memory_info().rss
                percent = child.cpu_percent(None)
            except psutil.Error:  # it ended between the listing and the reading
                continue
            cpu += percent if pid in known else 0.0
        values = {"children/count": float(len(self._children)), "children/rss_gb": rss / _GB}
        if self.samples:
            values["children/cpu_percent"] = cpu
        return values
