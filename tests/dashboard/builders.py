"""Stores with known contents, written through the public logging API, for the dashboard's tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import expertrack

DOMAINS = ["code", "math", "prose"]
XSS_NAME = "<img src=x onerror=alert(1)>"
AFFINITY_STEPS = (0, 10, 20)
LAYERS, EXPERTS = 2, 4


def affinity_at(step: int) -> np.ndarray:
    """The moe/affinity counts [L, E, D] the MoE run logs at ``step``: distinct in every cell and step."""
    base = np.arange(LAYERS * EXPERTS * len(DOMAINS), dtype=np.float64).reshape(LAYERS, EXPERTS, len(DOMAINS))
    return base * 10 + step


def utilization_at(step: int) -> np.ndarray:
    """The moe/utilization fractions [L, E] logged at ``step`` (rows sum to 1)."""
    rows = np.arange(1, LAYERS * EXPERTS + 1, dtype=np.float64).reshape(LAYERS, EXPERTS) + step
    return rows / rows.sum(axis=1, keepdims=True)


def dense_run(directory: Path, name: str = "dense-a", steps: int = 60, lr: float = 3e-4) -> str:
    """A finished dense run: train/loss every step, val/loss every 10 steps, a console log."""
    with expertrack.init(
        project="study",
        name=name,
        dir=directory,
        config={"lr": lr, "model": {"layers": 2}},
        tags=["dense"],
        group="sweep",
        mirror="off",
    ) as run:
        for step in range(steps):
            metrics = {"train/loss": 4.0 / (step + 1) + lr, "train/lr": lr}
            if step % 10 == 0:
                metrics["val/loss"] = 5.0 / (step + 1)
            run.log(metrics, step=step)
        run.append_file("console.log", b"".join(b"step %d\n" % s for s in range(steps)))
        return run.id


def moe_run(directory: Path, name: str = "moe-a") -> str:
    """A finished MoE run with affinity and utilization at AFFINITY_STEPS and entropies every step."""
    config = {"lr": 1e-3, "moe": {"num_experts": EXPERTS, "top_k": 2, "num_layers": LAYERS, "domains": DOMAINS}}
    with expertrack.init(project="study", name=name, dir=directory, config=config, tags=["moe"], mirror="off") as run:
        for step in range(30):
            metrics: dict[str, object] = {
                "train/loss": 3.0 / (step + 1),
                "moe/router_entropy_norm": 0.9 - step / 100,
                "moe/load_entropy_norm": 0.95,
            }
            if step in AFFINITY_STEPS:
                metrics["moe/affinity"] = affinity_at(step)
                metrics["moe/utilization"] = utilization_at(step)
                metrics["moe/router_entropy_norm_layers"] = np.array([0.8, 0.7]) - step / 100
            run.log(metrics, step=step)
        return run.id


def spiky_run(directory: Path, points: int, spikes: dict[int, float], name: str = "spiky") -> str:
    """A run whose ``train/loss`` is ``points`` points of small noise with ``spikes`` (index -> value)."""
    values = 1.0 + 0.01 * np.random.default_rng(0).standard_normal(points)
    for index, value in spikes.items():
        values[index] = value
    with expertrack.init(project="bench", name=name, dir=directory, mirror="off") as run:
        for step, value in enumerate(values.tolist()):
            run.log({"train/loss": value}, step=step)
        return run.id


def xss_run(directory: Path) -> str:
    """A run whose user strings are all markup: name, group, tags, config, notes and console."""
    with expertrack.init(
        project="study",
        name=XSS_NAME,
        dir=directory,
        group="<b>group</b>",
        tags=["<svg onload=alert(2)>"],
        notes="<script>alert(3)</script>",
        config={"<i>key</i>": "<img src=y onerror=alert(4)>"},
        mirror="off",
    ) as run:
        for step in range(20):
            run.log({"train/loss": 1.0 + step, "<u>odd</u>/key": float(step)}, step=step)
        run.append_file("console.log", b"<script>alert(5)</script>\n")
        return run.id


def seed_value(step: int, lr: float, seed: int) -> float:
    """The train/loss a seed run logs: a decay, lifted by 100 x lr, plus 0.1 per seed (so s.d. over 3 seeds = 0.1)."""
    return 4.0 / (step + 1) + 100 * lr + 0.1 * seed


def seed_runs(directory: Path, lrs: tuple[float, ...] = (1e-3, 3e-3), seeds: int = 3, steps: int = 40) -> list[str]:
    """A small sweep: for each lr, ``seeds`` finished runs in group ``lr-<lr>``, config {lr, seed, model.layers}."""
    ids = []
    for lr in lrs:
        for seed in range(seeds):
            config = {"lr": lr, "seed": seed, "model": {"layers": 2}}
            with expertrack.init(
                project="sweep", name=f"lr{lr}-s{seed}", dir=directory, config=config, group=f"lr-{lr}", mirror="off"
            ) as run:
                for step in range(steps):
                    run.log({"train/loss": seed_value(step, lr, seed)}, step=step)
                ids.append(run.id)
    return ids


def lb_loss_run(directory: Path, name: str = "with-lb") -> str:
    """A run logging its load-balancing loss beside the main loss (``train/lb_loss`` sorts before ``train/loss``),
    and a system metric."""
    with expertrack.init(project="study", name=name, dir=directory, config={"lr": 1e-3}, mirror="off") as run:
        for step in range(10):
            metrics = {"train/lb_loss": 0.01, "train/loss": 2.0 - step / 10, "system/gpu_memory_gb": 10.0 + step}
            if step % 5 == 0:
                metrics["val/loss"] = 2.5 - step / 10
            run.log(metrics, step=step)
        return run.id


def diverging_run(directory: Path, name: str = "diverged", nan_at: int = 30, steps: int = 40) -> str:
    """A run whose train/loss turns NaN at step ``nan_at`` (and stays so): the NaN alert rule's case."""
    with expertrack.init(project="study", name=name, dir=directory, config={"lr": 1.0}, mirror="off") as run:
        for step in range(steps):
            run.log({"train/loss": 3.0 - step / 100 if step < nan_at else float("nan")}, step=step)
        return run.id
