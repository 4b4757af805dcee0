"""Figures 3 and 4: the load-balancing ablation and per-domain eval, checked through bar heights and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer

import expertrack
from expertrack.figures import MissingDataError, ablation_lb, domain_eval, select
from expertrack.figures.output import write_result

from .synthetic import DOMAINS, MAXVIO, eval_loss, log_run

GROUPS = [*DOMAINS, "all"]


def _bars(ax) -> dict[str, list[float]]:
    """Bar heights per legend label, in group order."""
    return {c.get_label(): [p.get_height() for p in c.patches] for c in ax.containers if isinstance(c, BarContainer)}


def _error_spans(ax, label: str) -> list[tuple[float, float]]:
    container = next(c for c in ax.containers if isinstance(c, BarContainer) and c.get_label() == label)
    segments = container.errorbar.lines[2][0].get_segments()
    return [(float(s[0][1]), float(s[1][1])) for s in segments]


def _mean_loss(variant: str, domain: int | None) -> float:
    return (eval_loss(variant, 0, domain) + eval_loss(variant, 1, domain)) / 2


def test_ablation_compares_moe_with_and_without_lb_in_three_panels(selection):
    fig = ablation_lb(selection).figure
    loss, imbalance, entropy = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["Validation loss", "Load imbalance", "Normalised entropy"]
    assert [t.get_text() for t in loss.get_xticklabels()] == GROUPS
    indices = [0, 1, 2, None]
    for label, variant in (("MoE", "moe"), ("MoE, no LB", "moe-no-lb")):
        np.testing.assert_allclose(_bars(loss)[label], [_mean_loss(variant, i) for i in indices])
        # one standard deviation of the two seeds (0.1 apart) around each mean
        spread = np.std([0.0, 0.1], ddof=1)
        for (low, high), i in zip(_error_spans(loss, label), indices):
            assert (low, high) == pytest.approx((_mean_loss(variant, i) - spread, _mean_loss(variant, i) + spread))
    np.testing.assert_allclose(_bars(imbalance)["MoE"], [MAXVIO["moe"] + 0.05])
    np.testing.assert_allclose(_bars(imbalance)["MoE, no LB"], [MAXVIO["moe-no-lb"] + 0.05])
    assert [t.get_text() for t in entropy.get_xticklabels()] == ["load", "router"]
    np.testing.assert_allclose(_bars(entropy)["MoE, no LB"][0], 0.4)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["MoE", "MoE, no LB"]
    dots = [ln for ln in loss.get_lines() if ln.get_marker() == "o"]
    assert sorted(dots[0].get_ydata()) == pytest.approx([eval_loss("moe", 0, 0), eval_loss("moe", 1, 0)])


def test_ablation_csv_has_mean_spread_and_each_seed(selection, tmp_path: Path):
    write_result(ablation_lb(selection), tmp_path, ["pdf"])
    table = pd.read_csv(tmp_path / "ablation_lb.csv")
    row = table[(table.group == "MaxVio") & (table.series == "MoE, no LB")].iloc[0]
    assert row["mean"] == pytest.approx(3.05) and row["n_runs"] == 2
    assert [float(v) for v in row["values"].split(";")] == pytest.approx([3.0, 3.1])
    sidecar = json.loads((tmp_path / "ablation_lb.json").read_text())
    assert {r["variant"] for r in sidecar["runs"]} == {"moe", "moe-no-lb"}  # the dense runs are not in it
    maxvio = next(s for s in sidecar["sources"] if s["key"] == "moe/maxvio")
    assert maxvio["steps"] == [36, 39]  # the last 10% of steps 0..39 are averaged


def test_ablation_without_no_lb_runs_says_what_it_needs(store: Path):
    runs = [r for r in expertrack.Api(store).runs() if r.config["variant"] != "moe-no-lb"]
    with pytest.raises(MissingDataError, match="needs runs of both variants 'moe' and 'moe-no-lb'"):
        ablation_lb(select(runs))


def test_ablation_without_balance_metrics_keeps_the_loss_panel_and_notes_the_rest(tmp_path: Path):
    log_run(tmp_path, "moe", 0, moe_metrics=False)
    log_run(tmp_path, "moe-no-lb", 0, moe_metrics=False)
    result = ablation_lb(select(expertrack.Api(tmp_path).runs()))
    assert [ax.get_title() for ax in result.figure.axes] == ["Validation loss"]
    assert "left out: moe/maxvio, moe/load_entropy_norm, moe/router_entropy_norm" in result.notes[-1]


def test_domain_eval_has_bars_for_every_series_in_loss_and_perplexity(selection):
    result = domain_eval(selection)
    loss, ppl = result.figure.axes
    assert (loss.get_title(), ppl.get_title()) == ("Validation loss", "Validation perplexity")
    assert set(_bars(loss)) == {"Dense", "MoE", "MoE, no LB"}
    for label, variant in (("Dense", "dense"), ("MoE", "moe"), ("MoE, no LB", "moe-no-lb")):
        np.testing.assert_allclose(_bars(loss)[label], [_mean_loss(variant, i) for i in (0, 1, 2, None)])
        exp_means = [(np.exp(eval_loss(variant, 0, i)) + np.exp(eval_loss(variant, 1, i))) / 2 for i in (0, 1, 2, None)]
        np.testing.assert_allclose(_bars(ppl)[label], exp_means)
    assert [t.get_text() for t in loss.texts][:4] == [f"{_mean_loss('dense', i):.2f}" for i in (0, 1, 2, None)]
    colours = {c.get_label(): c.patches[0].get_facecolor() for c in loss.containers if isinstance(c, BarContainer)}
    assert colours["MoE"] != colours["Dense"]
    # eval/ppl overall is logged by no run: drawn as exp(eval/loss) for all, the figure's rule, with no note
    assert not any("eval/ppl" in n for n in result.notes)
    assert {s["key"] for s in result.sources if s.get("key", "").startswith("eval/")} >= {"eval/loss"}


def test_domain_eval_without_eval_metrics_names_them(tmp_path: Path):
    run = expertrack.init(project="p", name="no-eval", dir=tmp_path)
    run.log({"train/loss": 1.0})
    run.finish()
    with pytest.raises(MissingDataError, match="domain_eval: none of eval/loss, eval/ppl is logged in runs no-eval"):
        domain_eval(select(expertrack.Api(tmp_path).runs()))


def test_a_run_that_diverged_is_left_out_of_the_bars_with_a_note(tmp_path: Path):
    log_run(tmp_path, "dense", 0)
    log_run(tmp_path, "moe", 0)
    run = expertrack.init(project="fig", name="moe-s1", config={"variant": "moe", "seed": 1}, dir=tmp_path)
    run.log({"eval/loss/code": 2.6, "eval/loss": 2.6}, step=19)
    run.log({"eval/loss/code": float("nan"), "eval/loss": float("nan")}, step=39)  # diverged before the end
    run.finish()
    result = domain_eval(select(expertrack.Api(tmp_path).runs()))
    note = next(n for n in result.notes if n.startswith("eval/loss/code: left out (the run diverged"))
    assert "moe-s1 (nan from step 39)" in note
    code = result.table[(result.table.key == "eval/loss/code") & (result.table.series == "MoE")].iloc[0]
    assert code.n_runs == 1 and code["mean"] == pytest.approx(eval_loss("moe", 0, 0))  # not 2.6


def test_a_series_of_one_run_gets_no_error_bar_but_keeps_its_value_label(tmp_path: Path):
    directory = tmp_path / "runs"
    for variant in ("dense", "moe", "moe-no-lb"):
        log_run(directory, variant, 0)  # one seed: the demo's default
    log_run(directory, "moe", 1)  # ... but two for the MoE
    result = domain_eval(select(expertrack.Api(directory).runs(project="fig")))
    loss = result.figure.axes[0]
    assert all(len(segment) == 0 for segment in _error_segments(loss, "Dense"))  # not a zero-height cap
    assert all(len(segment) == 2 for segment in _error_segments(loss, "MoE"))
    assert [t.get_text() for t in loss.texts][:4] == [f"{eval_loss('dense', 0, i):.2f}" for i in (0, 1, 2, None)]


def _error_segments(ax, label: str) -> list:
    container = next(c for c in ax.containers if isinstance(c, BarContainer) and c.get_label() == label)
    return container.errorbar.lines[2][0].get_segments()


def test_a_note_says_where_logged_and_computed_perplexity_share_a_bar_group(tmp_path: Path):
    directory = tmp_path / "runs"
    for variant in ("dense", "moe", "moe-no-lb"):
        log_run(directory, variant, 0)
    with expertrack.init(project="fig", name="dense-s1", config={"variant": "dense"}, dir=directory) as run:
        run.log({"eval/loss": 2.0, "eval/ppl": 7.0}, step=39)  # this one logs its own overall perplexity
    result = domain_eval(select(expertrack.Api(directory).runs(project="fig")))
    assert result.notes == [
        "eval/ppl: drawn as exp(eval/loss) for dense-s0, moe-s0, moe-no-lb-s0, which log no eval/ppl, "
        "beside the logged eval/ppl of dense-s1"
    ]
