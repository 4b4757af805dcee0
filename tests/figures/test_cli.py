"""`expertrack figures` and `make_all`: the files written, messages for what is missing, and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from matplotlib.colors import to_hex
from PIL import Image

import expertrack
from expertrack.cli.figures import FIGURE_NAMES
from expertrack.cli.main import cli
from expertrack.figures import FIGURES, domain_eval, loss_curves, make_all, router_entropy

from .synthetic import log_run


def _figures(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["figures", *args])
    return result.exit_code, result.output


def test_cli_writes_every_figure_with_its_data_and_sources(store: Path, tmp_path: Path):
    out = tmp_path / "figs"
    code, output = _figures("--dir", str(store), "--out", str(out), "--format", "svg")
    assert code == 0, output
    for name in FIGURES:
        assert f"wrote {name}: {name}.svg, {name}.csv, {name}.json" in output
        assert "<svg" in (out / f"{name}.svg").read_text()
        assert not pd.read_csv(out / f"{name}.csv").empty
        assert json.loads((out / f"{name}.json").read_text())["figure"] == name
    assert "5 figure(s) written" in output


def test_cli_only_takes_names_and_report_numbers_and_writes_each_format(store: Path, tmp_path: Path):
    out = tmp_path / "out"
    code, output = _figures("--dir", str(store), "--out", str(out), "--format", "pdf,png,svg", "--only", "1")
    assert code == 0, output
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"loss_curves.{ext}" for ext in ("csv", "json", "pdf", "png", "svg")]
    pdf = (out / "loss_curves.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Type3" not in pdf  # vector, with TrueType fonts as publishers ask
    width, _ = Image.open(out / "loss_curves.png").size
    assert 1500 < width < 2300  # a full-width figure (about 6.9 in) at 300 dpi
    two = tmp_path / "two"
    code, output = _figures("--dir", str(store), "--out", str(two), "--format", "svg", "--only", "specialization,5")
    assert code == 0, output
    assert sorted(p.name for p in two.glob("*.svg")) == ["router_entropy.svg", "specialization.svg"]


def test_cli_skips_a_figure_whose_metrics_are_missing_and_makes_the_others(tmp_path: Path):
    log_run(tmp_path / "runs", "dense", 0)
    log_run(tmp_path / "runs", "dense", 1)
    code, output = _figures("--dir", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--format", "png")
    assert code == 0, output
    assert "skipped specialization: specialization: no run has the moe/affinity array" in output
    assert "skipped ablation_lb: ablation_lb: needs runs of both variants" in output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["domain_eval.png", "loss_curves.png"]
    assert "2 figure(s) written" in output and "3 skipped" in output


def test_cli_exits_1_when_no_figure_can_be_made(tmp_path: Path):
    run = expertrack.init(project="p", name="empty", dir=tmp_path)
    run.log({"lr": 0.1})
    run.finish()
    code, output = _figures("--dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 1
    assert "0 figure(s) written" in output


def test_cli_asks_for_a_project_when_the_store_has_several(tmp_path: Path):
    for project in ("a", "b"):
        expertrack.init(project=project, name="r", dir=tmp_path).finish()
    code, output = _figures("--dir", str(tmp_path))
    assert code == 2 and "several projects (a, b)" in output and "--project" in output


def test_cli_overrides_make_plain_runs_comparable(tmp_path: Path):
    for name in ("base", "lb", "nolb"):
        run = expertrack.init(project="p", name=name, dir=tmp_path)
        run.log({"eval/loss": 2.0, "moe/maxvio": 1.0})
        run.finish()
    code, output = _figures(
        "--dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
        "--format",
        "png",
        "--dense",
        "base",
        "--moe",
        "lb",
        "--no-lb",
        "nolb",
        "--only",
        "ablation_lb",
    )
    assert code == 0, output
    assert "series MoE: lb" in output and "series MoE, no LB: nolb" in output
    assert set(pd.read_csv(tmp_path / "out" / "ablation_lb.csv").series) == {"MoE", "MoE, no LB"}


def test_cli_runs_restricts_the_runs_and_bad_names_are_reported(store: Path, tmp_path: Path):
    code, output = _figures(
        "--dir",
        str(store),
        "--out",
        str(tmp_path),
        "--format",
        "png",
        "--runs",
        "moe-s0,moe-no-lb-s0",
        "--only",
        "domain_eval",
    )
    assert code == 0, output
    assert set(pd.read_csv(tmp_path / "domain_eval.csv").series) == {"MoE", "MoE, no LB"}
    code, output = _figures("--dir", str(store), "--runs", "nope")
    assert code == 2 and "no run matches 'nope'" in output
    code, output = _figures("--dir", str(store), "--format", "gif")
    assert code == 2 and "unknown figure format gif" in output
    code, output = _figures("--dir", str(store), "--only", "7")
    assert code == 2 and "unknown figure '7'" in output


def test_a_series_has_the_same_colour_in_every_figure(selection):
    line_colours = {ln.get_label(): ln.get_color() for ln in loss_curves(selection).figure.axes[0].get_lines()}
    bar_colours = {
        c.get_label(): to_hex(c.patches[0].get_facecolor())
        for c in domain_eval(selection).figure.axes[0].containers
        if hasattr(c, "patches")
    }
    entropy_colours = {ln.get_label(): ln.get_color() for ln in router_entropy(selection).figure.axes[0].get_lines()}
    for series in selection.series:
        assert line_colours[f"{series.label} (2 seeds)"] == series.color
        assert bar_colours[series.label] == series.color.lower()
        if series.variant != "dense":
            assert entropy_colours[f"{series.label} (2 seeds)"] == series.color


def test_make_all_reports_written_and_skipped_figures(store: Path, tmp_path: Path):
    runs = [r for r in expertrack.Api(store).runs() if r.config["variant"] == "dense"]
    lines: list[str] = []
    made = make_all(runs, tmp_path, formats=["png"], echo=lines.append)
    assert sorted(made.written) == ["domain_eval", "loss_curves"]
    assert sorted(made.skipped) == ["ablation_lb", "router_entropy", "specialization"]
    assert lines[0].startswith(f"figures into {tmp_path}/")


def test_a_figure_that_fails_is_reported_and_the_others_are_still_made(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    def broken(*args: object) -> None:
        raise RuntimeError("cannot plot this")

    monkeypatch.setitem(FIGURES, "domain_eval", broken)
    out = tmp_path / "out"
    code, output = _figures("--dir", str(store), "--out", str(out), "--format", "svg")
    assert code == 1, output
    assert "failed domain_eval: RuntimeError: cannot plot this" in output
    assert "4 figure(s) written" in output and "1 failed" in output
    assert (out / "loss_curves.svg").exists() and not (out / "domain_eval.svg").exists()


def test_the_cli_lists_the_same_figures_as_the_library():
    assert tuple(FIGURES) == FIGURE_NAMES


def test_cli_group_keeps_one_experiment_apart_from_another(tmp_path: Path):
    for group, seed in (("first", 0), ("second", 1)):
        log_run(tmp_path, "dense", seed, group=group)
        log_run(tmp_path, "moe", seed, group=group)
    out = tmp_path / "out"
    code, output = _figures(
        "--dir", str(tmp_path), "--out", str(out), "--group", "second", "--only", "4", "--format", "svg"
    )
    assert code == 0, output
    assert "series Dense: dense-s1" in output and "series MoE: moe-s1" in output
    assert set(pd.read_csv(out / "domain_eval.csv").n_runs) == {1}
    code, output = _figures("--dir", str(tmp_path), "--group", "third")
    assert code == 2 and "no runs in group 'third'" in output


def test_heatmap_run_is_named_like_any_run(store: Path, tmp_path: Path):
    moe = [r for r in expertrack.Api(store).runs() if r.config["variant"] == "moe"][-1]  # not the default first
    out = tmp_path / "heat"
    code, output = _figures(
        "--dir", str(store), "--out", str(out), "--only", "2", "--format", "svg", "--heatmap-run", moe.id[:3]
    )
    assert code == 0, output
    sources = json.loads((out / "specialization.json").read_text())
    assert [r["run_id"] for r in sources["runs"]] == [moe.id] and sources["parameters"]["run"] == moe.name
    code, output = _figures("--dir", str(store), "--out", str(out), "--only", "2", "--heatmap-run", "no-such-run")
    assert code == 2 and "no run matches 'no-such-run'" in output
