"""Which runs are dense, MoE and MoE without load balancing, and how seeds group into compared series.

A *series* is one thing a figure compares (a legend entry): the runs of one variant by default, the runs
of one group with ``group_by="group"``, or a single run with ``group_by="run"``. Runs in one series are
seeds of the same setup; figures show their mean and spread. Each series gets one colour, line style and
hatch, kept in every figure made from the same ``Selection``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from expertrack.figures.style import HATCHES, LINESTYLES, PALETTE

VARIANTS = ("dense", "moe", "moe-no-lb")
VARIANT_LABELS = {"dense": "Dense", "moe": "MoE", "moe-no-lb": "MoE, no LB"}
_NO_LB_NAMES = {"moe-no-lb", "moe-nolb", "no-lb", "nolb", "moe-without-lb", "without-lb"}
_LB_COEF_KEYS = ("lb_coef", "lb_weight", "aux_loss_coef", "load_balance_coef", "router_aux_loss_coef")


class RunLike(Protocol):
    """The part of ``expertrack.Api``'s run object that figures read (docs/architecture.md)."""

    # read-only properties: a Protocol's plain attributes would demand exactly these (mutable) types
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def state(self) -> str: ...

    def metric_keys(self) -> list[str]: ...
    def array_keys(self) -> list[str]: ...
    def scalars(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def arrays(self, key: str) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Series:
    """One compared entity: its legend label, variant (if known), runs (seeds) and drawing style."""

    key: str
    label: str
    variant: str | None
    runs: list[RunLike]
    color: str = PALETTE[0]
    linestyle: Any = "-"
    hatch: str = ""


@dataclass
class Selection:
    """The series a set of figures compares, in legend order."""

    series: list[Series] = field(default_factory=list)

    def runs(self) -> list[RunLike]:
        """Every run of every series."""
        return [run for s in self.series for run in s.runs]

    def by_variant(self, variant: str) -> list[Series]:
        """The series whose runs are all of ``variant``."""
        return [s for s in self.series if s.variant == variant]


def _norm(text: object) -> str:
    return str(text).strip().lower().replace("_", "-").replace(" ", "-")


def _variant_of_name(text: object) -> str | None:
    name = _norm(text)
    if name in _NO_LB_NAMES:
        return "moe-no-lb"
    return name if name in VARIANTS else None


def config_value(config: Mapping[str, Any], *path: str) -> Any:
    """``config[a][b]``, also found flattened as ``"a/b"`` or ``"a.b"``; None when absent."""
    for sep in ("/", "."):
        if sep.join(path) in config:
            return config[sep.join(path)]
    node: Any = config
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _variant_from_config(config: Mapping[str, Any]) -> str | None:
    model = _norm(config_value(config, "model") or "")
    experts = config_value(config, "num_experts") or config_value(config, "moe", "num_experts")
    is_moe = model == "moe" or (isinstance(experts, int | float) and experts > 1)
    if not is_moe:
        return "dense" if model == "dense" or experts in (0, 1) else None
    lb = config_value(config, "load_balancing")
    if lb is None:
        lb = config_value(config, "moe", "load_balancing")
    coefs = [config_value(config, k) for k in _LB_COEF_KEYS] + [config_value(config, "moe", k) for k in _LB_COEF_KEYS]
    if lb is False or any(c == 0 for c in coefs if isinstance(c, int | float)):
        return "moe-no-lb"
    return "moe"


def infer_variant(run: RunLike) -> str | None:
    """The run's variant: config ``variant``, else its tags, else its group, else model config flags."""
    config = run.config or {}
    found = _variant_of_name(config.get("variant", ""))
    if found:
        return found
    tag_variants = {_variant_of_name(tag) for tag in run.tags or ()}
    for variant in ("moe-no-lb", "moe", "dense"):
        if variant in tag_variants:
            return variant
    return _variant_of_name(run.group or "") or _variant_from_config(config)


def matches(run: RunLike, ref: str) -> bool:
    """Whether ``ref`` names ``run``: its name, its id, or a prefix of its id."""
    return ref in (run.name, run.id) or (len(ref) >= 4 and run.id.startswith(ref))


def select(
    runs: Iterable[RunLike],
    overrides: Mapping[str, Sequence[str]] | None = None,
    group_by: str = "variant",
) -> Selection:
    """Group ``runs`` into series; ``overrides`` maps a variant to run names/ids forced to it.

    ``group_by`` is ``"variant"`` (runs of unknown variant fall back to their group, then their name),
    ``"group"`` or ``"run"``. Series come in the order dense, MoE, MoE no-LB, then the rest as first seen.
    """
    if group_by not in ("variant", "group", "run"):
        raise ValueError(f"group_by must be 'variant', 'group' or 'run', not {group_by!r}")
    runs = list(runs)
    forced = _resolve_overrides(runs, overrides or {})
    buckets: dict[str, Series] = {}
    for run in runs:
        variant = forced.get(run.id) or infer_variant(run)
        key, label = _series_key(run, variant, group_by)
        series = buckets.setdefault(key, Series(key=key, label=label, variant=variant, runs=[]))
        series.runs.append(run)
        if series.variant != variant:
            series.variant = None  # a group that mixes variants is not one variant
    rank = {v: i for i, v in enumerate(VARIANTS)}
    ordered = sorted(buckets.values(), key=lambda s: rank.get(s.variant or "", len(VARIANTS)))
    _assign_styles(ordered)
    return Selection(series=ordered)


def _resolve_overrides(runs: list[RunLike], overrides: Mapping[str, Sequence[str]]) -> dict[str, str]:
    forced: dict[str, str] = {}
    for variant, refs in overrides.items():
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        for ref in refs:
            hits = [run for run in runs if matches(run, ref)]
            if not hits:
                raise ValueError(f"no run named {ref!r} among the chosen runs (given as {variant})")
            forced.update({run.id: variant for run in hits})
    return forced


def _series_key(run: RunLike, variant: str | None, group_by: str) -> tuple[str, str]:
    if group_by == "run":
        return f"run:{run.id}", run.name
    if group_by == "variant" and variant:
        return variant, VARIANT_LABELS[variant]
    if run.group:
        return f"group:{run.group}", run.group
    return f"run:{run.id}", run.name


def _assign_styles(series: list[Series]) -> None:
    """Known variants keep their fixed slots (dense, MoE, no-LB); other series take free slots in order."""
    used: set[int] = set()
    for s in series:
        slot = VARIANTS.index(s.variant) if s.variant in VARIANTS else None
        if slot is None or slot in used:
            slot = next(i for i in itertools.count(len(VARIANTS)) if i not in used)
        used.add(slot)
        s.color = PALETTE[slot % len(PALETTE)]
        s.linestyle = LINESTYLES[slot % len(LINESTYLES)]
        s.hatch = HATCHES[slot % len(HATCHES)]
