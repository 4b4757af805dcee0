"""Which runs are dense, MoE and no-LB, and the series they form: from config, tags, group, flags, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

import expertrack
from expertrack.figures import infer_variant, select
from expertrack.figures.style import PALETTE

from .synthetic import log_run


def _run(directory: Path, name: str, **init: object):
    run = expertrack.init(project="sel", name=name, dir=directory, **init)
    run.log({"train/loss": 1.0})
    run.finish()
    return expertrack.Api(directory).run(run.id)


@pytest.mark.parametrize(
    ("init", "variant"),
    [
        ({"config": {"variant": "moe-no-lb"}}, "moe-no-lb"),
        ({"config": {"variant": "MoE_no_LB"}}, "moe-no-lb"),
        ({"tags": ["moe", "no-lb"]}, "moe-no-lb"),
        ({"tags": ["baseline", "dense"]}, "dense"),
        ({"group": "moe"}, "moe"),
        ({"config": {"model": "moe", "load_balancing": False}}, "moe-no-lb"),
        ({"config": {"moe": {"num_experts": 8, "lb_coef": 0.0}}}, "moe-no-lb"),
        ({"config": {"num_experts": 8, "lb_coef": 0.01}}, "moe"),
        ({"config": {"model": "dense"}}, "dense"),
        ({"config": {"lr": 3e-4}}, None),
    ],
)
def test_variant_is_read_from_config_tags_group_and_model_flags(tmp_path: Path, init: dict, variant: str | None):
    assert infer_variant(_run(tmp_path, "r", **init)) == variant


def test_config_variant_wins_over_tags(tmp_path: Path):
    run = _run(tmp_path, "r", config={"variant": "dense"}, tags=["moe"])
    assert infer_variant(run) == "dense"


def test_seeds_of_a_variant_form_one_series_in_fixed_order(selection):
    assert [s.label for s in selection.series] == ["Dense", "MoE", "MoE, no LB"]
    assert [sorted(r.name for r in s.runs) for s in selection.series] == [
        ["dense-s0", "dense-s1"],
        ["moe-s0", "moe-s1"],
        ["moe-no-lb-s0", "moe-no-lb-s1"],
    ]
    assert [s.color for s in selection.series] == PALETTE[:3]


def test_colours_stay_with_the_variant_when_a_variant_is_absent(store: Path):
    runs = [r for r in expertrack.Api(store).runs(project="fig") if not r.name.startswith("dense")]
    chosen = select(runs)
    assert {s.label: s.color for s in chosen.series} == {"MoE": PALETTE[1], "MoE, no LB": PALETTE[2]}


def test_overrides_reassign_runs_by_name_or_id(tmp_path: Path):
    plain = [_run(tmp_path, name) for name in ("a", "b", "c")]
    chosen = select(plain, {"dense": ["a"], "moe": [plain[1].id], "moe-no-lb": ["c"]})
    assert [(s.variant, [r.name for r in s.runs]) for s in chosen.series] == [
        ("dense", ["a"]),
        ("moe", ["b"]),
        ("moe-no-lb", ["c"]),
    ]


def test_an_override_naming_no_chosen_run_is_an_error(tmp_path: Path):
    with pytest.raises(ValueError, match="no run named 'zzz'"):
        select([_run(tmp_path, "a")], {"moe": ["zzz"]})


def test_unknown_runs_group_by_their_group_then_stand_alone(tmp_path: Path):
    runs = [_run(tmp_path, "a", group="sweep"), _run(tmp_path, "b", group="sweep"), _run(tmp_path, "c")]
    chosen = select(runs)
    assert [(s.label, len(s.runs), s.variant) for s in chosen.series] == [("sweep", 2, None), ("c", 1, None)]
    assert [s.color for s in chosen.series] == PALETTE[3:5]


def test_group_by_run_gives_every_run_its_own_series(tmp_path: Path):
    log_run(tmp_path, "moe", 0)
    log_run(tmp_path, "moe", 1)
    chosen = select(expertrack.Api(tmp_path).runs(), group_by="run")
    assert sorted(s.label for s in chosen.series) == ["moe-s0", "moe-s1"]
    assert len({s.color for s in chosen.series}) == 2
