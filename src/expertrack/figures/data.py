"""Reading what figures plot out of runs, and the plain data the plotting functions take.

Everything here is NumPy/pandas only; the plotting modules turn these values into matplotlib artists, so
they can be tested with plain arrays as well as with runs from a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from expertrack.figures.selection import RunLike, Series, config_value

# aggregate lives in expertrack.seeds (NumPy only), shared with the dashboard; re-exported here for figures
from expertrack.seeds import aggregate as aggregate

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DEFAULT_DOMAINS = ("code", "math", "prose")


class MissingDataError(LookupError):
    """A figure's metrics are absent from the chosen runs; the message names what is missing and where."""


@dataclass
class FigureResult:
    """A made figure, the table of what it plots (written as CSV) and where its data came from."""

    name: str
    figure: Figure
    table: pd.DataFrame
    sources: list[dict[str, Any]]
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Curve:
    """One series' line over training: the mean across its runs and their standard deviation."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: int
    color: str = "#0072B2"
    linestyle: Any = "-"
    raw_mean: np.ndarray | None = None  # the unsmoothed mean, drawn faint when smoothing is on


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average, as TensorBoard and W&B smooth curves.

    ``s_t = w s_{t-1} + (1 - w) x_t``, divided by ``1 - w^(t+1)`` so early points are not pulled toward 0
    (the bias correction of Adam, Kingma & Ba 2015, section 3). Non-finite points are carried over.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), not {weight}")
    out = np.empty(len(values), dtype=float)
    acc, count = 0.0, 0
    for i, value in enumerate(values):
        if np.isfinite(value):
            acc = weight * acc + (1.0 - weight) * value
            count += 1
        out[i] = acc / (1.0 - weight**count) if count else np.nan
    return out


def tokens_per_step(run: RunLike) -> float | None:
    """Tokens one optimizer step consumes: config ``tokens_per_step``, else batch_size x block_size."""
    config = run.config or {}
    for path in (("tokens_per_step",), ("train", "tokens_per_step")):
        value = config_value(config, *path)
        if isinstance(value, int | float) and value > 0:
            return float(value)
    for prefix in ((), ("train",)):
        batch = config_value(config, *prefix, "batch_size")
        block = config_value(config, *prefix, "block_size")
        if isinstance(batch, int | float) and isinstance(block, int | float):
            return float(batch * block)
    return None


def run_scalars(run: RunLike, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of one scalar metric, non-finite points dropped."""
    steps, values, _ = read_series(run, key)
    return steps, values


def read_series(run: RunLike, key: str) -> tuple[np.ndarray, np.ndarray, str | None]:
    """``(steps, values, diverged)``: the finite points of one scalar metric, and, when the series ends in
    non-finite values (a run that diverged), what it became and from which step ("nan from step 60")."""
    steps, _, values = run.scalars(key)
    steps, values = np.asarray(steps), np.asarray(values, float)
    keep = np.isfinite(values)
    diverged = None
    if values.size and not keep[-1]:
        finite = np.flatnonzero(keep)
        first_bad = int(finite[-1]) + 1 if finite.size else 0
        diverged = f"{values[-1]} from step {int(steps[first_bad])}"
    return steps[keep], values[keep], diverged


def final_value(steps: np.ndarray, values: np.ndarray, tail: float = 0.0) -> tuple[float, list[int]]:
    """The value at the end of a run and the steps it came from.

    ``tail`` = 0 takes the last point (eval metrics: already an average over many tokens). ``tail`` > 0
    averages the points in the last ``tail`` fraction of the logged step range, for noisy per-step metrics.
    """
    if len(values) == 0:
        raise ValueError("no points")
    if tail <= 0:
        return float(values[-1]), [int(steps[-1])]
    start = steps[-1] - tail * (steps[-1] - steps[0])
    keep = steps >= start
    return float(np.mean(values[keep])), [int(steps[keep][0]), int(steps[-1])]


def missing_report(series: Sequence[Series], keys: Sequence[str], kind: str = "metric") -> dict[str, list[str]]:
    """For each run lacking one of ``keys``, the keys it lacks (``kind`` is "metric" or "array")."""
    missing: dict[str, list[str]] = {}
    for s in series:
        for run in s.runs:
            have = set(run.metric_keys() if kind == "metric" else run.array_keys())
            lacking = [k for k in keys if k not in have]
            if lacking:
                missing[run.name] = lacking
    return missing


def describe_missing(figure: str, missing: dict[str, list[str]], runs: int) -> str:
    """A one-paragraph message for ``MissingDataError``: which keys are missing from which runs."""
    lines = [f"{figure}: missing from {len(missing)} of {runs} run(s):"]
    lines += [f"  {name}: {', '.join(keys)}" for name, keys in missing.items()]
    return "\n".join(lines)


def domains_of(run: RunLike, count: int | None = None) -> list[str]:
    """The run's domain names: config ``moe.domains``, else code/math/prose when 3, else d0..dN."""
    names = config_value(run.config or {}, "moe", "domains") or config_value(run.config or {}, "domains")
    if isinstance(names, list | tuple) and (count is None or len(names) == count):
        return [str(n) for n in names]
    if count is None or count == len(DEFAULT_DOMAINS):
        return list(DEFAULT_DOMAINS)
    return [f"d{i}" for i in range(count)]


def run_record(run: RunLike, series: Series) -> dict[str, Any]:
    """Who a figure's data came from, for its JSON sidecar."""
    return {
        "run_id": run.id,
        "run_name": run.name,
        "project": run.project,
        "group": run.group,
        "series": series.label,
        "variant": series.variant,
        "seed": config_value(run.config or {}, "seed"),
        "state": run.state,
    }
