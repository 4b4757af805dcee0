"""Figures 1 and 5: loss curves and router entropy, checked through the lines, bands and legend drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

import expertrack
from expertrack.figures import MissingDataError, loss_curves, plot_panels, router_entropy, select
from expertrack.figures.curves import MAX_PLOT_POINTS
from expertrack.figures.data import Curve, aggregate, ema
from expertrack.figures.output import write_result

from .synthetic import BASE, LAYERS, STEPS, entropy, eval_loss, log_run, train_loss

SERIES = {"Dense": "dense", "MoE": "moe", "MoE, no LB": "moe-no-lb"}


def _lines(ax) -> dict[str, object]:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_loss_curves_draw_the_seed_mean_per_series_with_a_band(selection):
    result = loss_curves(selection)
    train, val = result.figure.axes
    assert (train.get_title(), val.get_title()) == ("Training loss", "Validation loss")
    assert train.get_xlabel() == "Training step"
    assert "nats/token" in train.get_ylabel()
    steps = np.arange(STEPS)
    for label, variant in SERIES.items():
        line = _lines(train)[f"{label} (2 seeds)"]
        expected = (
            np.array([train_loss(variant, 0, s) for s in steps]) + [train_loss(variant, 1, s) for s in steps]
        ) / 2
        np.testing.assert_allclose(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), expected)
        assert line.get_color() == next(s.color for s in selection.series if s.label == label)
        val_line = _lines(val)[f"{label} (2 seeds)"]
        np.testing.assert_allclose(val_line.get_xdata(), [9, 19, 29, 39])
        np.testing.assert_allclose(
            val_line.get_ydata(), (eval_loss(variant, 0, None) + eval_loss(variant, 1, None)) / 2
        )
    assert _lines(val)["MoE (2 seeds)"].get_marker() == "o"  # 4 evals: each measured point is marked
    assert _lines(train)["MoE (2 seeds)"].get_marker() in (None, "None", "")
    bands = [c for c in train.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 3  # one ±1 s.d. band per series of two seeds
    legend = [t.get_text() for t in result.figure.legends[0].get_texts()]
    assert legend == ["Dense (2 seeds)", "MoE (2 seeds)", "MoE, no LB (2 seeds)"]


def test_loss_curves_csv_holds_what_is_drawn_and_json_names_runs_and_steps(selection, tmp_path: Path):
    result = loss_curves(selection)
    files = write_result(result, tmp_path / "out", ["svg"])
    assert [f.name for f in files] == ["loss_curves.svg", "loss_curves.csv", "loss_curves.json"]
    table = pd.read_csv(tmp_path / "out" / "loss_curves.csv")
    assert list(table.columns) == ["panel", "series", "step", "mean", "std", "n_runs"]
    moe_train = table[(table.panel == "train/loss") & (table.series == "MoE")]
    np.testing.assert_allclose(moe_train["mean"], [BASE["moe"] + 0.05 + 5 / (s + 1) for s in range(STEPS)])
    np.testing.assert_allclose(moe_train["std"], np.std([0.0, 0.1], ddof=1))
    assert set(moe_train.n_runs) == {2}
    import json

    sidecar = json.loads((tmp_path / "out" / "loss_curves.json").read_text())
    assert sorted(r["run_name"] for r in sidecar["runs"]) == sorted(f"{v}-s{s}" for v in BASE for s in (0, 1))
    train_source = next(s for s in sidecar["sources"] if s["panel"] == "train/loss" and s["run_name"] == "moe-s1")
    assert train_source["steps"] == [0, STEPS - 1] and train_source["points"] == STEPS
    assert sidecar["parameters"] == {"x": "step", "smooth": 0.0}


def test_smoothing_draws_the_ema_over_a_faint_raw_curve(selection):
    train = loss_curves(selection, smooth=0.6).figure.axes[0]
    raw = [ln for ln in train.get_lines() if ln.get_alpha() == 0.25]
    smoothed = _lines(train)["MoE (2 seeds)"]
    raw_moe = next(ln for ln in raw if ln.get_color() == smoothed.get_color())
    np.testing.assert_allclose(smoothed.get_ydata(), ema(np.asarray(raw_moe.get_ydata()), 0.6))
    assert len(raw) == 3
    assert not np.allclose(smoothed.get_ydata(), raw_moe.get_ydata())


def test_tokens_on_the_x_axis_come_from_batch_and_block_size(selection):
    train = loss_curves(selection, x="tokens").figure.axes[0]
    assert train.get_xlabel() == "Training tokens"
    np.testing.assert_allclose(_lines(train)["MoE (2 seeds)"].get_xdata(), np.arange(STEPS) * 4 * 16)


def test_tokens_without_a_batch_size_name_the_run(tmp_path: Path):
    run = expertrack.init(project="p", name="bare", dir=tmp_path)
    run.log({"train/loss": 1.0})
    run.finish()
    with pytest.raises(MissingDataError, match="bare has no tokens_per_step"):
        loss_curves(select(expertrack.Api(tmp_path).runs()), x="tokens")


def test_a_missing_validation_loss_is_noted_and_the_training_panel_still_drawn(tmp_path: Path):
    run = expertrack.init(project="p", name="train-only", dir=tmp_path, config={"variant": "moe"})
    for step in range(5):
        run.log({"train/loss": 2.0 - 0.1 * step})
    run.finish()
    result = loss_curves(select(expertrack.Api(tmp_path).runs()))
    assert [ax.get_title() for ax in result.figure.axes if ax.get_visible()] == ["Training loss"]
    assert result.notes == ["loss_curves: missing from 1 of 1 run(s):\n  train-only: eval/loss"]


def test_loss_curves_without_any_loss_say_which_keys_are_missing(tmp_path: Path):
    run = expertrack.init(project="p", name="lonely", dir=tmp_path)
    run.log({"lr": 1e-3})
    run.finish()
    with pytest.raises(MissingDataError, match=r"lonely: train/loss, eval/loss"):
        loss_curves(select(expertrack.Api(tmp_path).runs()))


def test_router_entropy_has_a_panel_per_layer_with_only_the_moe_series(selection):
    result = router_entropy(selection)
    axes = [ax for ax in result.figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [f"Layer {i}" for i in range(LAYERS)]
    for layer, ax in enumerate(axes):
        assert ax.get_ylim() == (0.0, 1.03)
        lines = _lines(ax)
        assert set(lines) == {"MoE (2 seeds)", "MoE, no LB (2 seeds)"}
        for label, variant in (("MoE (2 seeds)", "moe"), ("MoE, no LB (2 seeds)", "moe-no-lb")):
            np.testing.assert_allclose(lines[label].get_ydata(), [entropy(variant, layer, s) for s in range(STEPS)])
    assert set(result.table.layer) == {"Layer 0", "Layer 1"}
    assert result.parameters["key"] == "moe/router_entropy_norm_layers"


def test_router_entropy_falls_back_to_the_all_layer_scalar(tmp_path: Path):
    run = expertrack.init(project="p", name="scalar-only", dir=tmp_path, config={"variant": "moe"})
    for step in range(4):
        run.log({"moe/router_entropy_norm": 1.0 - 0.1 * step})
    run.finish()
    result = router_entropy(select(expertrack.Api(tmp_path).runs()))
    ax = result.figure.axes[0]
    assert ax.get_title() == "Mean over layers"
    np.testing.assert_allclose(_lines(ax)["MoE"].get_ydata(), [1.0, 0.9, 0.8, 0.7])


def test_router_entropy_missing_everywhere_names_both_keys(tmp_path: Path):
    log_run(tmp_path, "dense", 0)
    with pytest.raises(MissingDataError) as err:
        router_entropy(select(expertrack.Api(tmp_path).runs()))
    assert "moe/router_entropy_norm_layers" in str(err.value) and "dense-s0" in str(err.value)


def test_ema_is_debiased_and_keeps_a_constant_constant():
    np.testing.assert_allclose(ema(np.full(5, 3.0), 0.9), 3.0)
    np.testing.assert_allclose(ema(np.array([1.0, 3.0]), 0.5), [1.0, (0.25 * 1 + 0.5 * 3) / 0.75])


def test_aggregate_interpolates_runs_logged_at_different_steps_within_their_overlap():
    x, mean, std = aggregate(
        [(np.array([0, 2, 4]), np.array([0.0, 2.0, 4.0])), (np.array([1, 3, 5]), np.array([1.0, 3.0, 5.0]))]
    )
    np.testing.assert_allclose(x, [1, 2, 3, 4])
    np.testing.assert_allclose(mean, [1, 2, 3, 4])
    np.testing.assert_allclose(std, 0.0)


def test_long_runs_are_thinned_for_drawing_but_keep_their_spikes(tmp_path: Path):
    run = expertrack.init(project="p", name="long", dir=tmp_path, config={"variant": "moe"})
    values = np.full(20_000, 2.0)
    values[12_345] = 9.0  # one loss spike that stride sampling would miss
    for step, value in enumerate(values):
        run.log({"train/loss": float(value)}, step=step)
    run.finish()
    result = loss_curves(select(expertrack.Api(tmp_path).runs()))
    line = _lines(result.figure.axes[0])["MoE"]
    assert len(line.get_xdata()) <= MAX_PLOT_POINTS
    assert 12_345 in line.get_xdata() and max(line.get_ydata()) == 9.0
    assert len(result.table) == 20_000  # the CSV keeps every point


def test_y_range_skips_the_initial_drop_of_dense_curves_but_shows_every_sparse_point():
    steps = np.arange(1000.0)
    dense = Curve("train", steps, 2.0 + 8.0 * np.exp(-steps / 10), np.zeros(1000), 1)
    sparse = Curve("val", np.array([100.0, 200, 300, 400]), np.array([4.0, 2.5, 2.2, 2.1]), np.zeros(4), 1)
    fig = plot_panels({"dense": [dense], "sparse": [sparse]}, "Training step", "loss")
    dense_ax, sparse_ax = fig.axes
    assert dense_ax.get_ylim()[1] < 3.0  # the first 5% (up to 10.0) would flatten the rest
    low, high = sparse_ax.get_ylim()
    assert low < 2.1 and high > 4.0


def test_a_diverged_training_loss_is_named_in_a_note(tmp_path: Path):
    log_run(tmp_path, "dense", 0)
    run = expertrack.init(project="fig", name="moe-s0", config={"variant": "moe"}, dir=tmp_path)
    for step in range(10):
        run.log({"train/loss": 3.0 - 0.1 * step if step < 6 else float("inf")}, step=step)
    run.finish()
    result = loss_curves(select(expertrack.Api(tmp_path).runs()))
    assert any("diverged: moe-s0 train/loss (inf from step 6)" in note for note in result.notes)
    moe = result.table[(result.table.series == "MoE") & (result.table.panel == "train/loss")]
    assert moe.step.max() == 5  # the curve stops at the last finite point
