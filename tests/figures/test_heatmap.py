"""Figure 2: the experts x domains heatmap, checked through the image's values, ticks and cell texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import expertrack
from expertrack.figures import MissingDataError, plot_specialization, select, specialization
from expertrack.figures.heatmap import normalize_counts
from expertrack.figures.output import write_result

from .synthetic import DOMAINS, EXPERTS, LAYERS, affinity, log_run

LAST_AFFINITY_STEP = 30  # logged every 10 steps over 40


def _images(fig):
    return [ax.images[0] for ax in fig.axes if ax.images]


def test_heatmap_shows_each_layer_as_domain_shares_at_the_last_step(selection):
    result = specialization(selection)
    images = _images(result.figure)
    assert len(images) == LAYERS
    expected = normalize_counts(affinity(LAST_AFFINITY_STEP), "domain") * 100
    for layer, image in enumerate(images):
        np.testing.assert_allclose(image.get_array(), expected[layer])
        np.testing.assert_allclose(image.get_array().sum(axis=0), 100.0)  # each domain's tokens sum to 100%
        ax = image.axes
        assert ax.get_title() == f"Layer {layer}"
        assert [t.get_text() for t in ax.get_xticklabels()] == DOMAINS
        texts = [t.get_text() for t in ax.texts]
        assert texts == [f"{v:.0f}" for v in expected[layer].ravel()]
    assert result.figure.axes[0].get_ylabel() == "Expert"
    colorbar = result.figure.axes[-1]
    assert colorbar.get_ylabel() == "Share of domain's tokens (%)"
    assert result.parameters["step"] == LAST_AFFINITY_STEP
    assert result.parameters["run"].startswith("moe-s")  # a load-balanced MoE run by default


def test_heatmap_of_one_layer_at_an_earlier_step_as_raw_counts(selection):
    chosen = specialization(selection, run="moe-no-lb-s1", layer=1, step=15, normalize="none")
    (image,) = _images(chosen.figure)
    np.testing.assert_allclose(image.get_array(), affinity(10)[1])
    assert image.axes.get_title() == "Layer 1"
    assert chosen.parameters["step"] == 10 and chosen.parameters["run"] == "moe-no-lb-s1"


def test_heatmap_csv_and_sidecar_record_the_cells_run_and_step(selection, tmp_path: Path):
    result = specialization(selection, run="moe-s0")
    write_result(result, tmp_path, ["png"])
    table = pd.read_csv(tmp_path / "specialization.csv")
    assert list(table.columns) == ["layer", "expert", "domain", "count", "value"]
    assert len(table) == LAYERS * EXPERTS * len(DOMAINS)
    cell = table[(table.layer == 1) & (table.expert == 2) & (table.domain == "prose")].iloc[0]
    assert cell["count"] == affinity(LAST_AFFINITY_STEP)[1, 2, 2]
    assert cell["value"] == pytest.approx(normalize_counts(affinity(LAST_AFFINITY_STEP), "domain")[1, 2, 2])
    import json

    sidecar = json.loads((tmp_path / "specialization.json").read_text())
    assert sidecar["sources"][0]["run_name"] == "moe-s0"
    assert sidecar["sources"][0]["step"] == LAST_AFFINITY_STEP


def test_dark_cells_get_light_text():
    matrix = np.array([[[0.0, 1.0]]])
    fig = plot_specialization(matrix, ["a", "b"], [0])
    colours = [t.get_color() for t in fig.axes[0].texts]
    assert colours == ["white", "black"]  # viridis: dark purple at 0, light yellow at the top


def test_domain_names_fall_back_to_indices_when_the_config_has_none(tmp_path: Path):
    run = expertrack.init(project="p", name="four", dir=tmp_path, config={"variant": "moe"})
    run.log({"moe/affinity": np.ones((1, 2, 4))})
    run.finish()
    fig = specialization(select(expertrack.Api(tmp_path).runs())).figure
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["d0", "d1", "d2", "d3"]


def test_heatmap_without_affinity_names_the_array_and_the_runs(tmp_path: Path):
    log_run(tmp_path, "dense", 0)
    with pytest.raises(MissingDataError, match=r"no run has the moe/affinity array .*dense-s0"):
        specialization(select(expertrack.Api(tmp_path).runs()))


def test_heatmap_step_before_any_logged_one_is_reported(selection):
    with pytest.raises(MissingDataError, match="at or before step -1"):
        specialization(selection, step=-1)


def test_heatmap_layer_out_of_range_is_reported(selection):
    with pytest.raises(MissingDataError, match="layer 5 not in run"):
        specialization(selection, layer=5)
