"""The alert rules: small state machines fed each key's newly stored points, each firing once per episode.

An *episode* is a stretch of a series in the bad state: NaN values until a finite one comes back, a spike until
the value is back under its threshold, an expert without tokens until it gets some again, MaxVio above its
threshold until it falls below, router entropy below its floor until it rises above. A rule fires when an
episode is confirmed and stays quiet until the episode ends, so a run that stays broken raises one alert, not
one per point. Rules see points in batches (one writer flush at a time) and are written for that: the common,
healthy batch costs a NumPy call or two, never a Python loop over its points.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAD_TO_SD = 1.4826  # MAD x this estimates the standard deviation of normal noise (Rousseeuw & Croux 1993)
MIN_HISTORY = 20  # points a spike rule needs before it judges anything
RELATIVE_FLOOR = 0.01  # the robust scale is at least 1% of |median|: a perfectly flat history is no licence


@dataclass(frozen=True)
class Firing:
    """What a rule raised: the step and value it concerns and a sentence saying what happened."""

    rule: str
    key: str | None
    step: int | None
    value: float | None
    message: str


def matches(key: str, patterns: Sequence[str]) -> bool:
    """Whether ``key`` is one of ``patterns`` (names or shell-style globs such as ``train/*``)."""
    return any(key == p or fnmatch.fnmatchcase(key, p) for p in patterns)


class NanRule:
    """A value turns NaN or infinite: fires at the first such point, again only after a finite value."""

    name = "nan"

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)
        self._bad: set[str] = set()  # keys in an episode

    def wants(self, key: str) -> bool:
        return matches(key, self.keys)

    def check(self, key: str, steps: Sequence[int], values: np.ndarray) -> list[Firing]:
        bad = key in self._bad
        if not bad:  # the healthy case, as cheap as it gets: a slow trainer flushes one point per key
            if len(values) <= 8 and all(map(math.isfinite, values.tolist())):
                return []
            if len(values) > 8 and np.isfinite(values).all():
                return []
        finite = np.isfinite(values)
        out, pos = [], 0
        while pos < len(values):
            rest = np.flatnonzero(finite[pos:] if bad else ~finite[pos:])
            if not rest.size:
                break
            index = pos + int(rest[0])
            if not bad:
                value = float(values[index])
                out.append(Firing(self.name, key, int(steps[index]), value, f"{key} is {value} at step {steps[index]}"))
            bad, pos = not bad, index + 1
        if bad:
            self._bad.add(key)
        else:
            self._bad.discard(key)
        return out


class _SpikeState:
    """One key's recent history (a ring of ``window`` points) and its open episode, if any."""

    def __init__(self, window: int) -> None:
        self.ring = np.empty(window, dtype=np.float64)
        self.count = 0  # points pushed so far (the ring holds the last min(count, window))
        self.threshold: float | None = None
        self.stale = 0  # points pushed since the threshold was computed
        self.scale_text = ""
        self.episode: tuple[int, float, float, str] | None = None  # (start step, value, threshold, scale text)
        self.fired = False
        self.since_fired = 0

    def push(self, values: np.ndarray) -> None:
        window = len(self.ring)
        values = values[np.isfinite(values)][-window:]  # NaN belongs to the NaN rule, not to the loss's scale
        n = len(values)
        start = self.count % window
        first = min(n, window - start)
        self.ring[start : start + first] = values[:first]
        self.ring[: n - first] = values[first:]
        self.count += n
        self.stale += n

    def refresh(self, factor: float) -> None:
        history = self.ring[: min(self.count, len(self.ring))]
        median = float(np.median(history))
        mad = float(np.median(np.abs(history - median))) * MAD_TO_SD
        scale = max(mad, RELATIVE_FLOOR * abs(median), 1e-12)
        self.threshold = median + factor * scale
        self.scale_text = f"median {median:.4g} + {factor:g} x robust scale {scale:.3g}"
        self.stale = 0


class SpikeRule:
    """A value above its window's median plus ``factor`` robust standard deviations (MAD-based) that does not
    come back under that threshold within ``patience`` steps. Fires once the patience has run out."""

    name = "spike"

    def __init__(self, keys: Sequence[str], factor: float, window: int, patience: int) -> None:
        self.keys, self.factor, self.window, self.patience = list(keys), factor, int(window), int(patience)
        self.refresh_every = max(1, self.window // 10)  # a stale-by-10% median moves little; it saves most medians
        self._state: dict[str, _SpikeState] = {}

    def wants(self, key: str) -> bool:
        return matches(key, self.keys)

    def check(self, key: str, steps: Sequence[int], values: np.ndarray) -> list[Firing]:
        st = self._state.get(key)
        if st is None:
            st = self._state[key] = _SpikeState(self.window)
        out: list[Firing] = []
        i, n = 0, len(values)
        while i < n:
            if st.episode is not None:
                i = self._in_episode(key, st, steps, values, i, out)
                continue
            if st.count < MIN_HISTORY:
                take = min(n, i + MIN_HISTORY - st.count)
                st.push(values[i:take])
                i = take
                continue
            if st.threshold is None or st.stale >= self.refresh_every:
                st.refresh(self.factor)
            assert st.threshold is not None
            end = min(n, i + self.refresh_every - st.stale)
            over = np.flatnonzero(values[i:end] > st.threshold)  # NaN compares False: never a spike
            if not over.size:
                st.push(values[i:end])
                i = end
                continue
            j = i + int(over[0])
            st.push(values[i:j])
            st.episode = (int(steps[j]), float(values[j]), st.threshold, st.scale_text)
            st.fired, st.since_fired = False, 0
            i = j + 1
        return out

    def _in_episode(
        self, key: str, st: _SpikeState, steps: Sequence[int], values: np.ndarray, i: int, out: list[Firing]
    ) -> int:
        """Walk points of an open episode (rare: a Python loop is fine); return where normal scanning resumes."""
        assert st.episode is not None
        start, peak, threshold, scale_text = st.episode
        for j in range(i, len(values)):
            value, step = float(values[j]), int(steps[j])
            if value <= threshold or (st.fired and st.since_fired >= self.window):
                # recovered, or the new level has lasted a whole window: it is the key's new normal
                st.episode = None
                if st.fired:
                    st.push(values[j : j + 1])
                    st.stale = self.refresh_every  # recompute from the new history at once
                return j + 1
            if st.fired:
                st.push(values[j : j + 1])  # after the alert, history follows the new level
                st.since_fired += 1
            elif step - start >= self.patience:
                st.fired = True
                out.append(
                    Firing(
                        self.name,
                        key,
                        start,
                        peak,
                        f"{key} spiked to {peak:.4g} at step {start}, above {threshold:.4g} ({scale_text} of its "
                        f"last {self.window} points), and has not recovered after {step - start} steps "
                        f"(now {value:.4g} at step {step})",
                    )
                )
        return len(values)


class RunLengthRule:
    """A scalar on the wrong side of a threshold for ``logs`` consecutive logs (MaxVio above, entropy below)."""

    def __init__(self, name: str, key: str, logs: int, above: float | None = None, fraction: float | None = None,
                 baseline_logs: int = 1) -> None:  # fmt: skip
        self.name, self.key, self.logs = name, key, int(logs)
        self.above, self.fraction, self.baseline_logs = above, fraction, int(baseline_logs)
        self._baseline: list[float] = []
        self._run = 0  # consecutive logs on the wrong side
        self._run_start: tuple[int, float] | None = None

    def wants(self, key: str) -> bool:
        return key == self.key

    def check(self, key: str, steps: Sequence[int], values: np.ndarray) -> list[Firing]:
        out = []
        for step, value in zip(steps, values.tolist()):  # a log every K steps: few points per flush
            limit = self._limit(value)
            if limit is None or math.isnan(value):
                continue
            wrong = value > limit if self.above is not None else value < limit
            if not wrong:
                self._run, self._run_start = 0, None
                continue
            self._run += 1
            if self._run_start is None:
                self._run_start = (int(step), value)
            if self._run == self.logs:
                out.append(Firing(self.name, key, int(step), value, self._message(key, int(step), value, limit)))
        return out

    def _limit(self, value: float) -> float | None:
        """The threshold, or None while the entropy rule is still learning its starting value."""
        if self.above is not None:
            return self.above
        if len(self._baseline) < self.baseline_logs:
            if math.isfinite(value):
                self._baseline.append(value)
            return None
        assert self.fraction is not None
        return self.fraction * float(np.mean(self._baseline))

    def _message(self, key: str, step: int, value: float, limit: float) -> str:
        assert self._run_start is not None
        since = self._run_start[0]
        if self.above is not None:
            return f"{key} has been above {limit:g} for {self.logs} logs since step {since} (now {value:.4g})"
        start = float(np.mean(self._baseline))
        return (
            f"{key} has been below {limit:.4g} ({self.fraction:g} x its starting value {start:.4g}) for {self.logs} "
            f"logs since step {since} (now {value:.4g}): the router is collapsing onto few experts"
        )


class DeadExpertRule:
    """An expert with no tokens for ``logs`` consecutive logs of a tokens-per-expert array ([E] or [L, E]).

    Experts that die at the same log are reported together, one alert per layer; an expert that receives tokens
    again ends its episode."""

    name = "dead_expert"

    def __init__(self, key: str, logs: int) -> None:
        self.key, self.logs = key, int(logs)
        self._zeros: np.ndarray | None = None  # consecutive logs without tokens, per [layer, expert]
        self._counting = False  # some expert is in a run of empty logs

    def wants(self, key: str) -> bool:
        return key == self.key

    def check_array(self, key: str, step: int, array: Any) -> list[Firing]:
        if not self._counting and np.all(array):  # every expert got tokens and none was counting: nothing to do
            return []
        counts = np.asarray(array, dtype=np.float64)
        counts = counts.reshape(1, -1) if counts.ndim == 1 else counts.reshape(-1, counts.shape[-1])
        if self._zeros is None or self._zeros.shape != counts.shape:
            self._zeros = np.zeros(counts.shape, dtype=np.int64)  # a new shape (experts added) starts afresh
        zero = counts == 0
        self._zeros = np.where(zero, self._zeros + 1, 0)
        self._counting = bool(zero.any())
        newly = self._zeros == self.logs
        out = []
        for layer in np.flatnonzero(newly.any(axis=1)):
            experts = [int(e) for e in np.flatnonzero(newly[layer])]
            dead = int((self._zeros[layer] >= self.logs).sum())
            where = f"layer {layer}: " if counts.shape[0] > 1 or np.ndim(array) > 1 else ""
            names = ", ".join(str(e) for e in experts)
            out.append(
                Firing(
                    self.name,
                    key,
                    int(step),
                    float(dead),
                    f"{where}expert{'s' if len(experts) > 1 else ''} {names} received no tokens in the last "
                    f"{self.logs} logs of {key} ({dead} of {counts.shape[1]} experts dead at step {step})",
                )
            )
        return out
