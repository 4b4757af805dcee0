"""Synthetic runs, logged through the real API: dense, MoE and MoE without load balancing, 2 seeds.

Values follow simple formulas (below) so tests can compute what each figure must draw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import expertrack

STEPS = 40
EVAL_EVERY = 10
LAYERS, EXPERTS = 2, 4
DOMAINS = ["code", "math", "prose"]
BASE = {"dense": 3.0, "moe": 2.5, "moe-no-lb": 2.8}
MAXVIO = {"moe": 0.2, "moe-no-lb": 3.0}


def train_loss(variant: str, seed: int, step: int) -> float:
    return BASE[variant] + 0.1 * seed + 5.0 / (step + 1)


def eval_loss(variant: str, seed: int, domain: int | None) -> float:
    """Constant over evals, so the last one is known: 0.2 per domain index, 'all' = domain 1."""
    return BASE[variant] + 0.1 * seed + 0.2 * (1 if domain is None else domain)


def entropy(variant: str, layer: int, step: int) -> float:
    end = 0.5 if variant == "moe" else 0.2
    return 1.0 - (1.0 - end) * step / (STEPS - 1) - 0.05 * layer


def affinity(step: int) -> np.ndarray:
    """Counts [L, E, D]: expert e takes extra tokens of domain e % D as training goes on."""
    counts = np.full((LAYERS, EXPERTS, len(DOMAINS)), 10.0)
    for expert in range(EXPERTS):
        counts[:, expert, expert % len(DOMAINS)] += step
    counts[1] *= 2  # layer 1 doubles every count: the same shares, other raw counts
    return counts


def log_run(
    directory: Path | str, variant: str, seed: int, moe_metrics: bool = True, project: str = "fig", **init: object
) -> str:
    """Log one synthetic run; returns its id."""
    is_moe = variant != "dense"
    config = {"variant": variant, "seed": seed, "batch_size": 4, "block_size": 16, "moe": {"domains": DOMAINS}}
    run = expertrack.init(project=project, name=f"{variant}-s{seed}", config=config, dir=directory, **init)
    for step in range(STEPS):
        data: dict = {"train/loss": train_loss(variant, seed, step)}
        if is_moe and moe_metrics:
            data["moe/maxvio"] = MAXVIO[variant] + 0.1 * seed
            data["moe/load_entropy_norm"] = 0.9 if variant == "moe" else 0.4
            data["moe/router_entropy_norm"] = entropy(variant, 0, step)
            data["moe/router_entropy_norm_layers"] = np.array([entropy(variant, i, step) for i in range(LAYERS)])
            if step % EVAL_EVERY == 0:
                data["moe/affinity"] = affinity(step)
        if step % EVAL_EVERY == EVAL_EVERY - 1:
            data["eval/loss"] = eval_loss(variant, seed, None)
            for i, domain in enumerate(DOMAINS):
                data[f"eval/loss/{domain}"] = eval_loss(variant, seed, i)
                data[f"eval/ppl/{domain}"] = float(np.exp(eval_loss(variant, seed, i)))
        run.log(data, step=step)
    run.finish()
    return run.id
