"""The technical report's five figures, made from stored runs (needs the ``figures`` extra: matplotlib).

```python
import expertrack
from expertrack import figures

runs = expertrack.Api().runs(project="moe")
made = figures.make_all(runs, "figures-out", formats=["pdf", "png"])   # every figure, CSV + JSON beside
result = figures.loss_curves(figures.select(runs), x="tokens", smooth=0.9)
result.figure.savefig("loss.pdf")                                     # a matplotlib Figure
```

Importing this package is the only place matplotlib loads (DESIGN.md, rule 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from expertrack.figures.bars import ablation_lb, domain_eval, plot_grouped_bars
from expertrack.figures.curves import loss_curves, plot_panels, router_entropy
from expertrack.figures.data import FigureResult, MissingDataError
from expertrack.figures.heatmap import plot_specialization, specialization
from expertrack.figures.output import FORMATS, check_formats, write_result
from expertrack.figures.selection import VARIANTS, RunLike, Selection, Series, infer_variant, select

__all__ = [
    "FIGURES",
    "FORMATS",
    "VARIANTS",
    "FigureOptions",
    "FigureResult",
    "MadeFigures",
    "MissingDataError",
    "Selection",
    "Series",
    "ablation_lb",
    "domain_eval",
    "infer_variant",
    "loss_curves",
    "make_all",
    "plot_grouped_bars",
    "plot_panels",
    "plot_specialization",
    "router_entropy",
    "select",
    "specialization",
]


@dataclass
class FigureOptions:
    """Settings shared by ``make_all`` and the CLI; each figure reads the ones it uses."""

    x: str = "step"  # x-axis of the curves: "step" or "tokens"
    smooth: float = 0.0  # EMA weight for the training loss, in [0, 1)
    heatmap_run: str | None = None  # run of the specialisation heatmap (default: first MoE run)
    layer: int | None = None  # heatmap layer (default: all layers)
    step: int | None = None  # heatmap step (default: last)
    normalize: str = "domain"  # heatmap normalisation: domain, expert or none


# The report's figures, in its order (seeds/000: figures 1-5).
FIGURES: dict[str, Callable[[Selection, FigureOptions], FigureResult]] = {
    "loss_curves": lambda s, o: loss_curves(s, x=o.x, smooth=o.smooth),
    "specialization": lambda s, o: specialization(s, o.heatmap_run, o.layer, o.step, o.normalize),
    "ablation_lb": lambda s, o: ablation_lb(s),
    "domain_eval": lambda s, o: domain_eval(s),
    "router_entropy": lambda s, o: router_entropy(s, x=o.x),  # already a window mean: left unsmoothed
}


@dataclass
class MadeFigures:
    """What ``make_all`` wrote (per figure, its files), what it skipped (per figure, the data it lacked) and what
    failed (per figure, the error)."""

    written: dict[str, list[Path]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)


def resolve_names(only: Iterable[str] | None) -> list[str]:
    """Figure names from names or report numbers (1-5); every figure when ``only`` is empty."""
    names = list(FIGURES)
    chosen = []
    for item in only or []:
        name = names[int(item) - 1] if item.isdigit() and 1 <= int(item) <= len(names) else item
        if name not in FIGURES:
            raise ValueError(f"unknown figure {item!r}; choose from {', '.join(names)} (or 1-{len(names)})")
        chosen.append(name)
    return list(dict.fromkeys(chosen)) or names


def make_all(
    runs: Selection | Iterable[RunLike],
    out_dir: str | Path,
    formats: Sequence[str] = ("pdf", "png"),
    only: Iterable[str] | None = None,
    options: FigureOptions | None = None,
    overrides: Mapping[str, Sequence[str]] | None = None,
    echo: Callable[[str], None] = print,
) -> MadeFigures:
    """Make the chosen figures (all five by default) into ``out_dir``, each with its CSV and JSON sidecar.

    ``runs`` is a ``Selection`` or runs from ``expertrack.Api().runs(...)`` (grouped with ``select`` and
    ``overrides``). A figure whose metrics are missing is skipped with a message naming what is missing, one
    that fails otherwise (a value it cannot plot, a file it cannot write) is reported in ``failed``; the others
    are still made. ``echo`` receives one progress line per figure.
    """
    selection = runs if isinstance(runs, Selection) else select(runs, overrides)
    options = options or FigureOptions()
    formats = check_formats(formats)
    names = resolve_names(only)
    made = MadeFigures()
    echo(f"figures into {out_dir}/ ({', '.join(formats)}; each with .csv data and .json sources)")
    for series in selection.series:
        echo(f"series {series.label}: {', '.join(r.name for r in series.runs)}")
    for name in names:
        try:
            result = FIGURES[name](selection, options)
            written = write_result(result, Path(out_dir), formats)
        except MissingDataError as missing:
            made.skipped[name] = str(missing)
            echo(f"skipped {name}: {missing}")
            continue
        except Exception as error:  # one figure's failure must not cost the others
            made.failed[name] = f"{type(error).__name__}: {error}"
            echo(f"failed {name}: {made.failed[name]}")
            continue
        made.written[name] = written
        made.notes[name] = result.notes
        echo(f"wrote {name}: " + ", ".join(p.name for p in made.written[name]))
        for note in result.notes:
            echo(f"  note: {note}")
    return made
