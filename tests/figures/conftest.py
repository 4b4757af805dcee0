"""Fixtures: a fresh store of synthetic runs per test (see synthetic.py for the values logged)."""

from __future__ import annotations

from pathlib import Path

import pytest

import expertrack

from .synthetic import BASE, log_run


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A tracking directory with 2 seeds each of dense, MoE and MoE without load balancing."""
    directory = tmp_path / "runs"
    for variant in BASE:
        for seed in (0, 1):
            log_run(directory, variant, seed)
    return directory


@pytest.fixture
def selection(store: Path):
    from expertrack.figures import select

    return select(expertrack.Api(store).runs(project="fig"))
