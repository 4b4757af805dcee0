"""Decoded series kept in the server's memory between chart requests, while their run stands still.

Reading a 1,000,000-point series out of the store costs ~50-70 ms on a busy 2-core machine (fetching 24 MB of
chunk blobs and copying them into arrays); reducing it to a chart's buckets costs ~2 ms. A finished run never
changes, and a chart is asked for again on every zoom, resize and page load, so the decoded arrays are kept,
keyed by run and key and checked against the run's mark (``run_mark``: state, end, heartbeat, and a running
run's last step), so a run that logged since is read afresh. A run still running is not read whole
again: only its points from the last cached step on (the value at that step may have been replaced), appended
to what is held; points before it never change while a run runs (``reparse`` rewrites only ended runs). Live
updates of a single run's chart (``after=``) bypass the cache. Least recently used series go first past
``max_bytes``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def run_mark(run: Any) -> tuple[Any, ...]:
    """What changes whenever a run gains points: its state, end and the writer's heartbeat, and while it runs its
    last step. The heartbeat alone lags: the writer rewrites the run's row at most every 2 s
    (``writer.ROW_UPDATE_S``) while its points land at every flush (0.5 s), so a chart of a running run was up
    to 2 s behind the store; the last step (two indexed queries) moves with each flush of a new step."""
    return (run.state, run.ended_at, run.heartbeat_at, run.last_step() if run.state == "running" else None)


class SeriesCache:
    """``(steps, times, values)`` of recently charted series; safe to share between request threads."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.used = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, str], tuple[tuple[Any, ...], tuple[Any, ...], int]] = OrderedDict()
        self._envelopes: OrderedDict[tuple[str, str, str], tuple[tuple[Any, ...], Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def scalars(self, run: Any, key: str, times: bool = True) -> tuple[np.ndarray, Any, np.ndarray]:
        """Every point of ``key`` in ``run``, from memory when the run has not changed since it was read.

        ``times=False`` (a chart on a step axis) may answer None for the times: a series first read that way is
        held without them, and read again, with them, when a time axis asks for it."""
        return self.scalars_many([run], key, times)[0]

    def scalars_many(
        self, runs: Sequence[Any], key: str, times: bool = True
    ) -> list[tuple[np.ndarray, Any, np.ndarray]]:
        """``scalars`` of each run, in order: the runs not held (or changed) are read from the store together,
        in one query (``expertrack.api.scalars_of_runs``), not one each (a grouped chart of 50 runs paid 50)."""
        from expertrack.api import scalars_of_runs

        answers: list[Any] = [None] * len(runs)
        marks = [run_mark(run) for run in runs]
        extend, fetch = [], []
        with self._lock:
            for i, run in enumerate(runs):
                item = self._items.get((run.id, key))
                usable = item is not None and (not times or item[1][1] is not None)
                if item is not None and usable and item[0] == marks[i]:
                    self._items.move_to_end((run.id, key))
                    self.hits += 1
                    answers[i] = item[1]
                elif (
                    item is not None
                    and usable
                    and item[0][0] == "running"
                    and marks[i][0] == "running"
                    and len(item[1][0])
                ):
                    extend.append((i, item[1]))
                else:
                    fetch.append(i)
        # outside the lock: two threads may read one series at once
        read = {i: _extended(runs[i], key, *held) for i, held in extend}
        if fetch:
            fetched = scalars_of_runs([runs[i] for i in fetch], key, times=times)
            read.update((i, fetched[runs[i].id]) for i in fetch)
        with self._lock:
            for i, (steps, stamps, values) in read.items():
                size = steps.nbytes + (0 if stamps is None else stamps.nbytes) + values.nbytes
                self.misses += 1
                old = self._items.pop((runs[i].id, key), None)
                if old is not None:
                    self.used -= old[2]
                if size <= self.max_bytes:
                    for array in (steps, stamps, values):
                        if array is not None:
                            array.setflags(write=False)  # shared between requests: nobody may change them in place
                    self._items[(runs[i].id, key)] = (marks[i], (steps, stamps, values), size)
                    self.used += size
                answers[i] = (steps, stamps, values)
            self._evict()
        return answers

    def envelope(self, run: Any, key: str) -> Any:
        """The block picks of ``key`` in ``run`` (``ApiRun.scalar_envelope``), from memory while the run has not
        changed; a run that changed is read afresh (its levels are a few percent of its points)."""
        return self.envelopes_many([run], key)[0]

    def envelopes_many(self, runs: Sequence[Any], key: str) -> list[Any]:
        """``envelope`` of each run, in order; those not held (or changed) read from the store in one query."""
        from expertrack.api import envelopes_of_runs

        answers: list[Any] = [None] * len(runs)
        marks = [run_mark(run) for run in runs]
        fetch = []
        with self._lock:
            for i, run in enumerate(runs):
                item = self._envelopes.get((run.id, key, "levels"))
                if item is not None and item[0] == marks[i]:
                    self._envelopes.move_to_end((run.id, key, "levels"))
                    self.hits += 1
                    answers[i] = item[1]
                else:
                    fetch.append(i)
        if not fetch:
            return answers
        fetched = envelopes_of_runs([runs[i] for i in fetch], key)
        with self._lock:
            for i in fetch:
                envelope = answers[i] = fetched[runs[i].id]
                size = 0 if envelope is None else envelope.steps.nbytes * 3
                self.misses += 1
                old = self._envelopes.pop((runs[i].id, key, "levels"), None)
                if old is not None:
                    self.used -= old[2]
                if size <= self.max_bytes:
                    self._envelopes[(runs[i].id, key, "levels")] = (marks[i], envelope, size)
                    self.used += size
            self._evict()
        return answers

    def _evict(self) -> None:
        """Drop the least recently used entries (series first) while over ``max_bytes``; the lock is held."""
        while self.used > self.max_bytes and (self._items or self._envelopes):
            items = self._items if self._items else self._envelopes
            _, entry = items.popitem(last=False)
            self.used -= entry[2]


def _extended(
    run: Any, key: str, steps: np.ndarray, times: np.ndarray | None, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The held points of a running run, with its points from the last held step on read from the store (with
    times when the held ones have them)."""
    last = int(steps[-1])
    new_steps, new_times, new_values = run.scalars(key, after_step=last - 1, times=times is not None)
    keep = len(steps) - 1 if len(new_steps) and int(new_steps[0]) == last else len(steps)
    return (
        np.concatenate([steps[:keep], new_steps]),
        None if times is None else np.concatenate([times[:keep], new_times]),
        np.concatenate([values[:keep], new_values]),
    )
