"""`expertrack alerts [RUN]`, the alerts section of `expertrack show`, and `expertrack run --alert` refusing a bad
rule before anything starts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import expertrack
from tests.conftest import expertrack_cli


def diverged_run(directory: Path, name: str, project: str = "cli") -> str:
    run = expertrack.init(project=project, name=name, dir=directory, mirror="off", alerts=["maxvio:logs=2"])
    for step in range(6):
        run.log({"train/loss": math.nan if step == 3 else 1.0, "moe/maxvio": 5.0 if step >= 4 else 0.1})
    run.finish()
    return run.id


def test_alerts_lists_one_run_or_every_run(tmp_path: Path) -> None:
    first = diverged_run(tmp_path, "first")
    second = diverged_run(tmp_path, "second", project="other")
    one = expertrack_cli("alerts", "first", "--dir", str(tmp_path))
    assert one.returncode == 0, one.stderr
    lines = one.stdout.splitlines()
    assert lines[0].split()[:6] == ["time", "rule", "key", "step", "value", "message"]
    assert "train/loss is nan at step 3" in one.stdout and "moe/maxvio has been above 3 for 2 logs" in one.stdout
    assert second not in one.stdout
    every = expertrack_cli("alerts", "--dir", str(tmp_path), "--json")
    rows = [json.loads(line) for line in every.stdout.splitlines()]
    assert [(r["run"], r["rule"], r["step"]) for r in rows] == [
        (second, "nan", 3), (second, "maxvio", 5), (first, "nan", 3), (first, "maxvio", 5),
    ]  # fmt: skip
    assert rows[0]["value"] == "nan" and rows[0]["name"] == "second"
    only = expertrack_cli("alerts", "--dir", str(tmp_path), "--project", "cli", "--rule", "maxvio", "--json")
    assert [(json.loads(line)["run"], json.loads(line)["rule"]) for line in only.stdout.splitlines()] == [
        (first, "maxvio")
    ]


def test_show_lists_the_runs_alerts(tmp_path: Path) -> None:
    run_id = diverged_run(tmp_path, "shown")
    shown = expertrack_cli("show", run_id, "--dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    section = shown.stdout.split("\nalerts\n", 1)[1]
    assert "train/loss is nan at step 3" in section and "maxvio" in section


def test_alerts_for_a_run_without_any_says_so(tmp_path: Path) -> None:
    run = expertrack.init(project="cli", name="clean", dir=tmp_path, mirror="off")
    run.log({"loss": 1.0})
    run.finish()
    result = expertrack_cli("alerts", "clean", "--dir", str(tmp_path))
    assert result.returncode == 0 and result.stdout == ""
    assert f"no alerts for run clean ({run.id})" in result.stderr


def test_run_refuses_an_unknown_rule_or_setting_before_starting(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    command = ["--", "touch", str(marker)]
    unknown = expertrack_cli("run", "--dir", str(tmp_path), "--alert", "nans", *command)
    assert unknown.returncode == 2 and "unknown alert rule 'nans'" in unknown.stderr
    setting = expertrack_cli("run", "--dir", str(tmp_path), "--alert", "spike:factr=3", *command)
    assert setting.returncode == 2 and "rule 'spike' has no setting 'factr'" in setting.stderr
    typed = expertrack_cli("run", "--dir", str(tmp_path), "--alert", "stall:minutes=soon", *command)
    assert typed.returncode == 2 and "stall.minutes takes a number, not 'soon'" in typed.stderr
    assert not marker.exists()


def test_replay_shows_what_other_settings_would_raise_and_stores_nothing(tmp_path: Path) -> None:
    run = expertrack.init(project="cli", name="tune", dir=tmp_path, mirror="off", alerts=False)
    for step in range(20):
        run.log({"moe/maxvio": 2.5 if step >= 10 else 0.5, "loss": 1.0})
    run.finish()
    stored = expertrack_cli("alerts", "tune", "--dir", str(tmp_path))
    assert "no alerts for run tune" in stored.stderr
    default = expertrack_cli("alerts", "tune", "--dir", str(tmp_path), "--replay")
    assert "no alerts for run tune" in default.stderr  # 2.5 is under the default threshold of 3
    strict = expertrack_cli(
        "alerts", "tune", "--dir", str(tmp_path), "--replay", "--alert", "maxvio:threshold=2,logs=4", "--json"
    )
    (row,) = [json.loads(line) for line in strict.stdout.splitlines()]
    assert (row["rule"], row["step"], row["value"]) == ("maxvio", 13, 2.5)
    assert row["time"] == expertrack.Api(tmp_path).run("tune").scalars("moe/maxvio")[1][13]  # the point's time
    assert expertrack.Api(tmp_path).run("tune").alerts() == []  # nothing stored
    refused = expertrack_cli("alerts", "tune", "--dir", str(tmp_path), "--alert", "spike")
    assert refused.returncode == 2 and "apply to --replay only" in refused.stderr


def test_alert_with_as_wandb_is_refused_naming_the_way_that_works(tmp_path: Path) -> None:
    result = expertrack_cli("run", "--dir", str(tmp_path), "--as-wandb", "--alert", "spike", "--", "true")
    assert result.returncode == 2 and "EXPERTRACK_ALERTS=FILE" in result.stderr
