"""A short demo run, end to end through the store: the directions the reference experiment must show.

The quick config (2 layers, width 32, 40 steps) takes a few seconds per run on one thread. Across seeds 0-3
the balanced MoE ends with MaxVio 1.0-1.3 and normalised load entropy 0.87-0.95, the run without load balancing
with MaxVio about 3 (everything in 2 of 8 experts) and entropy about 0.34, so the margins below are wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import expertrack  # noqa: E402
from expertrack.demo.corpus import builtin_corpus  # noqa: E402
from expertrack.demo.experiment import PROJECT, DemoOptions, default_config, run_demo  # noqa: E402
from expertrack.demo.train import train  # noqa: E402
from expertrack.moe import domain_specialization  # noqa: E402

STEPS = 40


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quick demo (three runs and the figures) into a fresh store, shared by the tests of this module."""
    directory = tmp_path_factory.mktemp("demo")
    lines: list[object] = []
    threads = torch.get_num_threads()
    try:
        results = run_demo(
            DemoOptions(dir=str(directory), steps=STEPS, quick=True, threads=1, out=str(directory / "fig")),
            echo=lines.append,
        )
    finally:
        torch.set_num_threads(threads)  # run_demo sets the process-wide thread count
    assert [r.variant for r in results] == ["dense", "moe", "moe-no-lb"]
    (directory / "echo.txt").write_text("\n".join(str(x) for x in lines))
    return directory


def _runs(directory: Path) -> dict[str, expertrack.ApiRun]:
    api = expertrack.Api(directory)
    return {r.config["variant"]: r for r in api.runs(project=PROJECT)}


def test_runs_are_tracked_with_config_tags_and_group(demo_store: Path) -> None:
    runs = _runs(demo_store)
    assert set(runs) == {"dense", "moe", "moe-no-lb"}
    assert len({r.group for r in runs.values()}) == 1
    for variant, r in runs.items():
        assert r.state == "finished" and variant in r.tags and r.name == f"{variant}-s0"
        assert r.config["seed"] == 0 and r.config["model"] == ("dense" if variant == "dense" else "moe")
        assert r.config["load_balancing"] is (variant == "moe")
        assert {"train/loss", "eval/loss", "train/domain_loss/math", "eval/ppl/prose"} <= set(r.metric_keys())
    assert {"moe/maxvio", "moe/lb_loss", "moe/z_loss", "moe/router_entropy_norm"} <= set(runs["moe"].metric_keys())
    assert "moe/affinity" in runs["moe-no-lb"].array_keys()
    assert not runs["dense"].array_keys()


def test_losses_fall(demo_store: Path) -> None:
    for variant, r in _runs(demo_store).items():
        _, _, loss = r.scalars("train/loss")
        assert loss[-5:].mean() < loss[:5].mean() - 1.0, variant  # from ~5.5 (log 256) to ~3.6
        for domain in ("code", "math", "prose"):
            _, _, ev = r.scalars(f"eval/loss/{domain}")
            assert ev[-1] < np.log(256) - 1.0, (variant, domain)


def test_without_load_balancing_the_load_is_less_balanced(demo_store: Path) -> None:
    runs = _runs(demo_store)
    last = {
        v: {k: runs[v].scalars(k)[2][-1] for k in ("moe/maxvio", "moe/load_entropy_norm")} for v in runs if v != "dense"
    }
    assert last["moe-no-lb"]["moe/maxvio"] > last["moe"]["moe/maxvio"] + 0.5
    assert last["moe-no-lb"]["moe/load_entropy_norm"] < last["moe"]["moe/load_entropy_norm"] - 0.2


def test_balanced_moe_specialises_above_uniform(demo_store: Path) -> None:
    _, affinity = _runs(demo_store)["moe"].arrays("moe/affinity")  # [windows, L, E, D]
    spec = domain_specialization(affinity[-1], top_k=2)  # 1 = uniform routing, 4 = every token
    assert (np.nanmax(spec, axis=(0, 1)) > 1.5).any()


def test_demo_prints_results_and_writes_the_figures(demo_store: Path) -> None:
    echo = (demo_store / "echo.txt").read_text()
    assert "without LB the load is less balanced" in echo
    assert "5 figures written" in echo
    assert len(list((demo_store / "fig").rglob("*.png"))) == 5


class _Recorder:
    id, name = None, "recorder"

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.config: dict[str, object] = {}

    def log(self, metrics: dict[str, object], step: int | None = None) -> None:
        if "train/loss" in metrics:
            self.losses.append(float(metrics["train/loss"]))  # type: ignore[arg-type]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread (the demo's default on 2 cores), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_same_seed_same_losses_on_cpu() -> None:
    corpus = builtin_corpus()
    cfg = replace(default_config(quick=True), steps=15, eval_every=15)
    a, b, c = _Recorder(), _Recorder(), _Recorder()
    train("moe", corpus, cfg, a)
    train("moe", corpus, cfg, b)
    train("moe", corpus, replace(cfg, seed=1), c)
    assert a.losses == b.losses
    assert a.losses != c.losses
