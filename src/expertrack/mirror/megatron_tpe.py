"""``expertrack import megatron-tpe DIR``: Megatron-LM's tokens-per-expert dumps into per-layer arrays of a run.

Megatron-LM (``--save-tokens-per-experts-interval``, ``megatron/training/activation_logging.py``) appends, on every
rank, to ``<save>/tokens_per_expert/rank<R>.jsonl`` one JSON object per MoE layer and saved iteration::

    {"iter": 100, "block": "decoder", "layer": 3, "tpe": [[128, 64], [96, 80]]}
    {"iter": 100, "block": "mtp", "mtp_idx": 0, "layer": 1, "tpe": [[50, 50]]}

``tpe`` holds one list per microbatch of the token counts of that rank's local experts. ``iter`` is the number of
updates after the step (Megatron passes ``iteration + 1``), so the counts belong to expertrack's step ``iter - 1``
(the 0-based index of the step, docs/parsers.md). Microbatches are summed; the layers of one iteration become one
``[L, E]`` array at that step under ``moe/tokens_per_expert`` (the key the MoE views, figures and the dead-expert
alert read), rows in layer order; multi-token-prediction layers go to ``moe/mtp<i>/tokens_per_expert``. Several
rank files are combined as the user says: ``sum`` (data-parallel replicas of the same experts) or ``concat``
(expert-parallel ranks, each holding a slice of the experts, in rank order), or one rank is read alone.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KEY = "moe/tokens_per_expert"
_RANK = re.compile(r"rank(\d+)\.jsonl$")


class MegatronTpeError(ValueError):
    """The files cannot be imported as asked; the message says which file and why."""


@dataclass
class TpeData:
    """What the files held: per key, per step, the [L, E] counts; and what was left out, with where."""

    arrays: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    layers: dict[str, list[int]] = field(default_factory=dict)
    ranks: list[int] = field(default_factory=list)
    bad_lines: list[str] = field(default_factory=list)  # "file:line: why"
    incomplete: int = 0  # iterations missing some layer, left out


def find_files(path: Path) -> dict[int, Path]:
    """rank -> file: ``path`` is a .jsonl file, a ``tokens_per_expert`` directory, or the ``--save`` directory."""
    if path.is_file():
        match = _RANK.search(path.name)
        return {int(match.group(1)) if match else 0: path}
    for folder in (path, path / "tokens_per_expert"):
        files = {int(m.group(1)): f for f in folder.glob("rank*.jsonl") if (m := _RANK.search(f.name))}
        if files:
            return dict(sorted(files.items()))
    raise MegatronTpeError(
        f"no Megatron-LM tokens-per-expert files (rank<N>.jsonl) in {path} or {path}/tokens_per_expert"
    )


def read_rank(path: Path, bad: list[str]) -> dict[tuple[str, int, int], np.ndarray]:
    """(key, step, layer) -> counts summed over microbatches, from one rank's file; bad lines noted in ``bad``."""
    out: dict[tuple[str, int, int], np.ndarray] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                key, step, layer, counts = _parse(line)
            except (ValueError, TypeError, KeyError) as exc:
                bad.append(f"{path}:{number}: {exc}")
                continue
            out[(key, step, layer)] = counts  # a repeated iteration (a resumed job) keeps the later line
    return out


def _parse(line: str) -> tuple[str, int, int, np.ndarray]:
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    iteration, layer, tpe = record["iter"], record["layer"], record["tpe"]
    if not isinstance(iteration, int) or iteration < 1 or not isinstance(layer, int) or layer < 0:
        raise ValueError(f"iter must be an integer >= 1 and layer >= 0, got iter={iteration!r} layer={layer!r}")
    counts = np.asarray(tpe, dtype=np.int64)  # ValueError for ragged or non-numeric lists
    if counts.ndim != 2 or counts.shape[1] == 0 or (counts < 0).any():
        raise ValueError(f"tpe must be a list of microbatches of non-negative counts, got shape {counts.shape}")
    block = record.get("block", "decoder")
    key = KEY if block == "decoder" else f"moe/{block}{record.get('mtp_idx', '')}/tokens_per_expert"
    return key, iteration - 1, layer, counts.sum(axis=0)


def combine(path: Path, ranks: str | None = None, rank: int | None = None) -> TpeData:
    """Read the files under ``path`` and combine them into [L, E] arrays per key and step.

    ``rank`` reads that rank alone; otherwise one file is read as is, and several need ``ranks``: ``"sum"`` or
    ``"concat"`` (a ``MegatronTpeError`` says so when it is missing).
    """
    files = find_files(path)
    if rank is not None:
        if rank not in files:
            raise MegatronTpeError(f"no file for rank {rank} in {path}; ranks found: {sorted(files)}")
        files = {rank: files[rank]}
    elif len(files) > 1 and ranks not in ("sum", "concat"):
        raise MegatronTpeError(
            f"found {len(files)} rank files in {path}; say how to combine them: --ranks sum (data-parallel copies "
            "of the same experts), --ranks concat (expert-parallel: each rank holds a slice of the experts, in "
            "rank order), or --rank N for one rank"
        )
    data = TpeData(ranks=sorted(files))
    per_rank = [read_rank(f, data.bad_lines) for f in files.values()]
    merged: dict[tuple[str, int, int], np.ndarray] = {}
    partial: set[tuple[str, int]] = set()
    for entry in set().union(*per_rank):
        parts = [r[entry] for r in per_rank if entry in r]
        if len(parts) != len(per_rank):
            partial.add(entry[:2])  # a rank stopped earlier (a crash): that iteration is incomplete
            continue
        merged[entry] = _merge(parts, ranks or "sum", entry)
    _stack(data, merged)  # counts the iterations that kept some layers; those that kept none are counted here
    data.incomplete += len(partial - {(key, step) for key, step, _layer in merged})
    return data


def _merge(parts: list[np.ndarray], how: str, entry: tuple[str, int, int]) -> np.ndarray:
    if len(parts) == 1:
        return parts[0]
    if how == "concat":
        return np.concatenate(parts)
    if len({p.shape for p in parts}) != 1:
        _key, step, layer = entry
        raise MegatronTpeError(
            f"--ranks sum: the ranks count different numbers of experts for layer {layer} at iteration {step + 1} "
            f"({sorted({len(p) for p in parts})}); expert-parallel ranks are combined with --ranks concat"
        )
    return np.sum(parts, axis=0)


def _stack(data: TpeData, merged: dict[tuple[str, int, int], np.ndarray]) -> None:
    """Each key's layers (sorted) stacked into [L, E] per step; steps missing a layer are counted, not stored."""
    by_key: dict[str, dict[int, dict[int, np.ndarray]]] = defaultdict(lambda: defaultdict(dict))
    for (key, step, layer), counts in merged.items():
        by_key[key][step][layer] = counts
    for key, steps in sorted(by_key.items()):
        layers = sorted({layer for per_layer in steps.values() for layer in per_layer})
        data.layers[key] = layers
        arrays: dict[int, np.ndarray] = {}
        for step, per_layer in sorted(steps.items()):
            widths = {len(v) for v in per_layer.values()}
            if len(per_layer) != len(layers) or len(widths) != 1:
                data.incomplete += 1
                continue
            arrays[step] = np.stack([per_layer[layer] for layer in layers])
        data.arrays[key] = arrays


def summary(data: TpeData) -> dict[str, Any]:
    """What the import recorded about its source, for ``run.config["megatron_tpe"]``."""
    return {"ranks": data.ranks, "layers": {key: layers for key, layers in data.layers.items()}}
