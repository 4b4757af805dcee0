"""Writing a made figure: the image in each format, its data as CSV, and a JSON sidecar of its sources."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from expertrack import __version__
from expertrack.figures.data import FigureResult
from expertrack.figures.style import save_figure

FORMATS = ("pdf", "png", "svg")


def check_formats(formats: Sequence[str]) -> list[str]:
    """The formats, lower-cased and checked against pdf, png and svg."""
    chosen = [f.strip().lower().lstrip(".") for f in formats if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise ValueError(f"unknown figure format {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    return chosen


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_result(result: FigureResult, out_dir: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``result`` as ``<out>/<name>.<fmt>`` for each format, ``<name>.csv`` and ``<name>.json``.

    The CSV holds exactly the values drawn (means, spreads, cells); the JSON names every run, key and
    step they came from, the figure's parameters, and any notes about data that was missing.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in check_formats(formats):
        path = out_dir / f"{result.name}.{fmt}"
        save_figure(result.figure, str(path), fmt)
        written.append(path)
    csv_path = out_dir / f"{result.name}.csv"
    result.table.to_csv(csv_path, index=False)
    sidecar = {
        "figure": result.name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "expertrack_version": __version__,
        "data": csv_path.name,
        "parameters": result.parameters,
        "runs": _runs(result.sources),
        "sources": result.sources,
        "notes": result.notes,
    }
    json_path = out_dir / f"{result.name}.json"
    json_path.write_text(json.dumps(sidecar, indent=2, default=_jsonable) + "\n")
    return [*written, csv_path, json_path]


def _runs(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run once, with the fields that identify it."""
    fields = ("run_id", "run_name", "project", "group", "series", "variant", "seed", "state")
    unique: dict[str, dict[str, Any]] = {}
    for source in sources:
        unique.setdefault(source["run_id"], {f: source.get(f) for f in fields})
    return list(unique.values())
