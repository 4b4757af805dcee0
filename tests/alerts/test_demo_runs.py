"""No false alarm on the reference experiment: its runs (dense, MoE, MoE without load balancing; two seeds, the
demo's own model and training loop at the quick budget) raise no alert with every rule on, the spike rule
included, except where the data shows the failure: at this tiny width, training without a load-balancing loss
really does starve experts, and each such alert is checked against the stored token counts. The full-budget six
runs were checked the same way (docs/alerts.md says how they behave)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import expertrack
from expertrack.demo.experiment import PROJECT, DemoOptions, run_demo


def test_the_reference_experiment_raises_no_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "every-rule.toml"
    rules.write_text("spike = true\nnan = true\nmaxvio = true\nentropy = true\ndead_expert = true\nstall = true\n")
    monkeypatch.setenv("EXPERTRACK_ALERTS", str(rules))  # the demo calls init() without alerts=: this applies
    directory = tmp_path / "demo"
    threads = torch.get_num_threads()
    try:
        run_demo(DemoOptions(dir=str(directory), seeds=2, quick=True, threads=1, figures=False), echo=lambda *a: None)
    finally:
        torch.set_num_threads(threads)  # run_demo sets the process-wide thread count
    runs = expertrack.Api(directory).runs(project=PROJECT)
    assert sorted(r.name for r in runs) == sorted(f"{v}-s{s}" for v in ("dense", "moe", "moe-no-lb") for s in (0, 1))
    assert all(r.state == "finished" for r in runs)
    assert "moe/tokens_per_expert" in runs[1].array_keys()  # the MoE rules had router metrics to judge
    balanced = [r for r in runs if r.config["variant"] != "moe-no-lb"]
    assert {r.name: [a.message for a in r.alerts()] for r in balanced} == {r.name: [] for r in balanced}
    for run in runs:
        if run.config["variant"] == "moe-no-lb":
            for alert in run.alerts():
                assert alert.rule == "dead_expert", alert.message
                assert_really_dead(run, alert)


def assert_really_dead(run: expertrack.ApiRun, alert: object) -> None:
    """The experts the alert names had no token in the 10 logs up to its step, and some before."""
    steps, counts = run.arrays("moe/tokens_per_expert")
    layer = int(alert.message.split(":")[0].split()[1])  # type: ignore[attr-defined]
    named = alert.message.split(": expert", 1)[1].split(" received")[0].lstrip("s ")  # type: ignore[attr-defined]
    experts = [int(e) for e in named.split(", ")]
    upto = int(np.flatnonzero(steps == alert.step)[0])  # type: ignore[attr-defined]
    window = counts[upto - 9 : upto + 1, layer, experts]
    assert window.shape[0] == 10 and (window == 0).all()
    assert (counts[: upto - 9, layer, experts] > 0).any(axis=0).all() or upto == 9
