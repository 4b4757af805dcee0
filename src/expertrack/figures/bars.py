"""Grouped bar figures of end-of-training values: the load-balancing ablation (3) and per-domain eval (4).

A bar is the mean of a series' runs (seeds); its error bar is one standard deviation across them (none for a
series of one run), and each run's own value is drawn as a dot, since with two or three seeds the dots say more
than the bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from expertrack.figures.data import (
    FigureResult,
    MissingDataError,
    domains_of,
    final_value,
    read_series,
    run_record,
)
from expertrack.figures.selection import Selection, Series
from expertrack.figures.style import FULL_WIDTH, new_figure, paper_style

MAX_VALUE_LABELS = 16  # write each bar's mean above it when a panel has at most this many bars
ERROR_STYLE = {"elinewidth": 0.8, "capsize": 2.5, "capthick": 0.8, "ecolor": "#333333"}
BALANCE_TAIL = 0.1  # per-step balance metrics: mean over the last 10% of training, not one noisy point


@dataclass(frozen=True)
class Metric:
    """One bar group: a label, the scalar key it reads, and how its end value is taken."""

    label: str
    key: str
    tail: float = 0.0  # 0: last point; > 0: mean over that last fraction of the run
    exp_of: str | None = None  # when ``key`` is absent, exp() of this key (perplexity from loss)


@dataclass
class BarSeries:
    """One series' bars across a panel's groups: each group's run values (empty: no bar)."""

    label: str
    values: list[list[float]]
    color: str = "#0072B2"
    hatch: str = ""


@dataclass
class BarPanel:
    """One axes of grouped bars."""

    title: str
    ylabel: str
    groups: list[str]
    bars: list[BarSeries] = field(default_factory=list)


def plot_grouped_bars(panels: Sequence[BarPanel], width_ratios: Sequence[float] | None = None) -> Figure:
    """Panels of grouped bars (mean, ±1 s.d. error bar, one dot per run), one legend above them all."""
    with paper_style():
        fig = new_figure(FULL_WIDTH, 2.3)
        axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=width_ratios).ravel()
        for ax, panel in zip(axes, panels):
            _draw_panel(ax, panel)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside upper center", ncols=min(len(labels), 4))
    return fig


def _draw_panel(ax: Axes, panel: BarPanel) -> None:
    width = 0.8 / len(panel.bars)
    x = np.arange(len(panel.groups))
    label_values = len(panel.groups) * len(panel.bars) <= MAX_VALUE_LABELS
    largest = max((abs(v) for series in panel.bars for vs in series.values for v in vs), default=1.0)
    decimals = 2 if largest < 10 else 1 if largest < 100 else 0  # one format per panel, so values line up
    tops = [0.0]
    for i, series in enumerate(panel.bars):
        offsets = x - 0.4 + width * (i + 0.5)
        means = np.array([np.mean(v) if v else np.nan for v in series.values])
        # one run has no spread to show: NaN draws no error bar at all, where 0 drew caps that read as "no variance"
        errors = np.array([np.std(v, ddof=1) if len(v) > 1 else np.nan for v in series.values])
        ax.bar(
            offsets,
            means,
            width,
            yerr=errors,
            label=series.label,
            color=series.color,
            hatch=series.hatch,
            edgecolor="white",
            linewidth=0.4,
            error_kw=ERROR_STYLE,
        )
        for offset, values, mean, error in zip(offsets, series.values, means, errors):
            if len(values) > 1:  # each seed, spread across the bar so the dots do not hide the error bar
                jitter = np.linspace(-width / 4, width / 4, len(values))
                ax.plot(
                    offset + jitter,
                    values,
                    "o",
                    color="black",
                    markeredgecolor="white",
                    markeredgewidth=0.3,
                    markersize=2.4,
                    zorder=3,
                )
            top = max([mean + (error if np.isfinite(error) else 0.0), *values]) if values else np.nan
            if label_values and np.isfinite(top):
                ax.annotate(
                    f"{mean:.{decimals}f}",
                    (offset, top),
                    xytext=(0, 1.5),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=5.5,
                )
                tops.append(top)
    ax.set_xticks(x, panel.groups)
    ax.set_title(panel.title)
    ax.set_ylabel(panel.ylabel)
    ax.grid(axis="x", visible=False)
    if label_values:
        ax.set_ylim(0, max(tops) * 1.12 or 1.0)  # room for the value labels inside the axes


def _values(
    series: Series, metric: Metric, sources: list[dict], derived: dict[str, list[str]], exp: dict[str, list[str]]
) -> list[float]:
    """The end values of ``series`` for ``metric``; ``exp`` collects, per metric key, the runs whose value was
    drawn as exp() of another key ("+" prefixed) and those that logged the key itself."""
    values = []
    for run in series.runs:
        keys = run.metric_keys()
        key = metric.key if metric.key in keys or metric.exp_of not in keys else metric.exp_of
        if key not in keys:
            continue
        steps, points, diverged = read_series(run, key)
        if diverged is not None:  # its last finite value would show a diverged run as a healthy one
            derived.setdefault(f"{key}: left out (the run diverged; its last value is not finite):", []).append(
                f"{run.name} ({diverged})"
            )
            continue
        if len(points) == 0:
            continue
        value, used = final_value(steps, points, metric.tail)
        if key != metric.key:
            value = float(np.exp(value))
            exp.setdefault(f"+{metric.key}", []).append(run.name)
        elif metric.exp_of:
            exp.setdefault(metric.key, []).append(run.name)
        values.append(value)
        sources.append({**run_record(run, series), "key": key, "steps": used, "value": value})
    return values


def build_panels(
    series: Sequence[Series], layout: Sequence[tuple[str, str, Sequence[Metric]]], figure: str
) -> tuple[list[BarPanel], pd.DataFrame, list[dict], list[str]]:
    """Panels of end values for ``layout`` = [(title, ylabel, metrics)]; groups no run has are dropped."""
    panels: list[BarPanel] = []
    rows: list[dict] = []
    sources: list[dict] = []
    missing: list[str] = []
    derived: dict[str, list[str]] = {}
    exp: dict[str, list[str]] = {}
    for title, ylabel, metrics in layout:
        panel = BarPanel(title, ylabel, [])
        columns = []
        for metric in metrics:
            per_series = [_values(s, metric, sources, derived, exp) for s in series]
            if not any(per_series):
                missing.append(metric.key)
                continue
            panel.groups.append(metric.label)
            columns.append(per_series)
            for s, values in zip(series, per_series):
                std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
                mean = float(np.mean(values)) if values else float("nan")
                rows.append(
                    {
                        "panel": title,
                        "group": metric.label,
                        "key": metric.key,
                        "series": s.label,
                        "mean": mean,
                        "std": std,
                        "n_runs": len(values),
                        "values": ";".join(f"{v:.6g}" for v in values),
                    }
                )
        if panel.groups:
            panel.bars = [
                BarSeries(s.label, [col[i] for col in columns], s.color, s.hatch) for i, s in enumerate(series)
            ]
            panels.append(panel)
    runs = ", ".join(r.name for s in series for r in s.runs)
    if not panels:
        raise MissingDataError(f"{figure}: none of {', '.join(missing)} is logged in runs {runs}")
    notes = [f"{what} {', '.join(names)}" for what, names in derived.items()]
    notes += _mixed_sources(layout, exp)
    if missing:
        notes.append(f"{figure}: not logged in any of runs {runs}, left out: {', '.join(missing)}")
    return panels, pd.DataFrame(rows), sources, notes


def _mixed_sources(layout: Sequence[tuple[str, str, Sequence[Metric]]], exp: dict[str, list[str]]) -> list[str]:
    """Notes for the bars that compare a value some runs logged with one computed for others (exp of a loss).

    Drawing perplexity as exp(loss) for every run is the figure's rule (its caption and JSON say so); a note is
    worth reading only where the same bar group mixes the two, since a run's own perplexity may be measured
    differently (per token vs per byte, another averaging).
    """
    notes = []
    for metric in (m for _, _, metrics in layout for m in metrics if m.exp_of):
        computed, logged = exp.get(f"+{metric.key}", []), exp.get(metric.key, [])
        if computed and logged:
            notes.append(
                f"{metric.key}: drawn as exp({metric.exp_of}) for {', '.join(computed)}, which log no "
                f"{metric.key}, beside the logged {metric.key} of {', '.join(logged)}"
            )
    return notes


def eval_domains(selection: Selection) -> list[str]:
    """Domains with an ``eval/loss/<domain>`` metric in any run, in config order where the config has one."""
    found: list[str] = []
    for run in selection.runs():
        found += [k.split("/", 2)[2] for k in run.metric_keys() if k.startswith("eval/loss/") and k.count("/") == 2]
    unique = list(dict.fromkeys(found))
    order = {d: i for run in selection.runs() for i, d in enumerate(domains_of(run))}
    return sorted(unique, key=lambda d: order.get(d, len(order)))


def _loss_metrics(domains: Sequence[str]) -> list[Metric]:
    return [Metric(d, f"eval/loss/{d}") for d in domains] + [Metric("all", "eval/loss")]


def domain_eval(selection: Selection) -> FigureResult:
    """Figure 4: per-domain validation loss and perplexity at the end of training, for every series.

    Reads ``eval/loss/<domain>``, ``eval/loss`` (as "all") and ``eval/ppl/<domain>``; a run without
    perplexity has it drawn as exp(loss), and a note says so.
    """
    domains = eval_domains(selection)
    ppl = [Metric(d, f"eval/ppl/{d}", exp_of=f"eval/loss/{d}") for d in domains]
    layout = [
        ("Validation loss", "Cross-entropy (nats/token)", _loss_metrics(domains)),
        ("Validation perplexity", "Perplexity", [*ppl, Metric("all", "eval/ppl", exp_of="eval/loss")]),
    ]
    panels, table, sources, notes = build_panels(selection.series, layout, "domain_eval")
    fig = plot_grouped_bars(panels)
    return FigureResult("domain_eval", fig, table, sources, {"domains": domains}, notes)


def ablation_lb(selection: Selection) -> FigureResult:
    """Figure 3: MoE with vs without load balancing: per-domain eval loss and the balance metrics.

    Balance metrics are averaged over the last 10% of training: MaxVio (max expert load over the mean load,
    minus 1; Wang et al. 2024, arXiv:2408.15664), and load and router entropy normalised by ln E.
    """
    series = selection.by_variant("moe") + selection.by_variant("moe-no-lb")
    if not selection.by_variant("moe") or not selection.by_variant("moe-no-lb"):
        found = ", ".join(f"{s.label} ({s.variant or 'unknown'})" for s in selection.series) or "none"
        raise MissingDataError(
            "ablation_lb: needs runs of both variants 'moe' and 'moe-no-lb' (config 'variant', tags, or "
            f"--moe/--no-lb); series found: {found}"
        )
    layout = [
        ("Validation loss", "Cross-entropy (nats/token)", _loss_metrics(eval_domains(selection))),
        ("Load imbalance", "max load / mean load - 1", [Metric("MaxVio", "moe/maxvio", BALANCE_TAIL)]),
        (
            "Normalised entropy",
            "Entropy / ln E",
            [
                Metric("load", "moe/load_entropy_norm", BALANCE_TAIL),
                Metric("router", "moe/router_entropy_norm", BALANCE_TAIL),
            ],
        ),
    ]
    panels, table, sources, notes = build_panels(series, layout, "ablation_lb")
    ratios = [max(len(p.groups), 1) + 0.5 for p in panels]
    fig = plot_grouped_bars(panels, width_ratios=ratios)
    return FigureResult("ablation_lb", fig, table, sources, {"balance_tail": BALANCE_TAIL}, notes)
