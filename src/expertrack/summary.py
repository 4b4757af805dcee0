"""Run summaries: last value by default, or what ``define_metric(summary=...)`` asks for, kept by the writer
(``SummaryState``); ``Summary`` is the user's ``run.summary``, a dict-like view of it.

Aggregates are updated per flush from whole slices of new points, so ``log()`` itself does no summary work
(DESIGN.md: the hot path has room for very little beyond the enqueue).
"""

from __future__ import annotations

import fnmatch
import math
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from expertrack.config import to_jsonable

AGGREGATES = ("min", "max", "mean", "last", "first", "none")


def parse_summary_spec(spec: str | None) -> list[str]:
    """'min' or 'min,max' -> ['min', 'max']; raises ValueError naming the bad part."""
    if spec is None:
        return ["last"]
    parts = [p.strip().lower() for p in spec.split(",") if p.strip()]
    for part in parts:
        if part not in AGGREGATES:
            raise ValueError(f"define_metric(summary={spec!r}): {part!r} is not one of {', '.join(AGGREGATES)}")
    if "none" in parts and len(parts) > 1:
        raise ValueError(f"define_metric(summary={spec!r}): 'none' cannot be combined with other summaries")
    return parts or ["last"]


class SummaryState:
    """Per-key first/last/min/max/sum/count over every point logged, NaN ignored for min/max/mean."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = {}  # key -> [first, last, min, max, sum, count]
        self.defs: list[dict[str, Any]] = []
        self.overrides: dict[str, Any] = {}
        self._modes: dict[str, list[str]] = {}
        self._defined: set[str] = set()  # keys a define_metric(summary=...) matched
        self.lock = threading.Lock()  # the writer updates, the training thread may read run.summary

    def update(self, key: str, values: Any) -> None:
        """Fold a non-empty NumPy array of new values (in step order) into the key's statistics."""
        import numpy as np

        finite = values[~np.isnan(values)]
        with np.errstate(invalid="ignore", over="ignore"):  # +inf and -inf together make a NaN mean, silently
            total = float(finite.sum())
        with self.lock:
            self._fold(key, values, finite, total)

    def _fold(self, key: str, values: Any, finite: Any, total: float) -> None:
        st = self.stats.get(key)
        if st is None:
            st = self.stats[key] = [float(values[0]), 0.0, math.inf, -math.inf, 0.0, 0.0]
        st[1] = float(values[-1])
        if finite.size:
            st[2] = min(st[2], float(finite.min()))
            st[3] = max(st[3], float(finite.max()))
            st[4] += total
            st[5] += finite.size

    def set_defs(self, defs: list[dict[str, Any]]) -> None:
        with self.lock:
            self.defs = defs
            self._modes.clear()
            self._defined.clear()

    def set_override(self, key: str, value: Any) -> None:
        """``run.summary[key] = value``: shown instead of the key's aggregate until the key is logged again."""
        with self.lock:
            self.overrides[key] = value

    def forget_override(self, key: str) -> None:
        """The key was logged after it was set by hand: its aggregates count again, as in wandb."""
        with self.lock:
            self.overrides.pop(key, None)

    def delete(self, key: str) -> None:
        """Remove a key from the summary: its override, and its aggregates until it is logged again."""
        with self.lock:
            if key not in self.overrides and key not in self.stats:
                raise KeyError(key)
            self.overrides.pop(key, None)
            self.stats.pop(key, None)

    def modes(self, key: str) -> list[str]:
        """The summary aggregates for ``key``: the latest define_metric whose name or glob matches, else last."""
        found = self._modes.get(key)
        if found is None:
            found = ["last"]
            for d in reversed(self.defs):
                if d.get("summary") is not None and (d["name"] == key or fnmatch.fnmatchcase(key, d["name"])):
                    found = parse_summary_spec(d["summary"])
                    self._defined.add(key)
                    break
            self._modes[key] = found
        return found

    def snapshot(self) -> dict[str, Any]:
        """The summary as stored: aggregates per key, values set by hand (and not logged since) on top."""
        with self.lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, st in self.stats.items():
            modes = self.modes(key)
            if modes == ["none"]:
                continue
            picked = {m: _aggregate(m, st) for m in modes}
            # as wandb: a key define_metric gave a summary holds {"min": ...}; any other, its last value
            out[key] = picked if key in self._defined else picked[modes[0]]
        out.update(self.overrides)
        return out


def _aggregate(mode: str, st: list[float]) -> float | None:
    first, last, lo, hi, total, count = st
    if mode == "first":
        return first
    if mode == "last":
        return last
    if not count:
        return math.nan
    if mode == "min":
        return lo
    if mode == "max":
        return hi
    return total / count


class Summary(MutableMapping[str, Any]):
    """A run's summary: last logged values (or define_metric's aggregate), with user overrides on top."""

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        on_set: Callable[[str, Any], None],
        on_delete: Callable[[str], None],
    ) -> None:
        self._snapshot = snapshot
        self._on_set = on_set
        self._on_delete = on_delete

    def __getitem__(self, key: str) -> Any:
        return self._snapshot()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._on_set(key, to_jsonable(value))

    def __delitem__(self, key: str) -> None:
        self._on_delete(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._snapshot())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        """``run.summary.best = 5`` sets the key, as ``run.summary["best"] = 5`` does (wandb's attribute style)."""
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
            return
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"summary has no key {name!r}") from None

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        """Set several keys at once."""
        for key, value in dict(other, **kwargs).items():
            self[key] = value

    def __repr__(self) -> str:
        return f"Summary({self._snapshot()!r})"
