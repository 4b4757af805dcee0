"""`expertrack ls / show / export / rm` on real stores written with the logging API."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

import expertrack
from expertrack.cli.main import cli
from tests.conftest import expertrack_cli

STEPS = 50


def log_run(directory: Path, name: str, project: str = "moe", exit_code: int = 0, **init: object) -> str:
    """A finished run: train/loss = 1/(step+1) at every step, val/loss every 10th, a per-expert array."""
    run = expertrack.init(project=project, name=name, dir=str(directory), mirror="off", **init)  # type: ignore[arg-type]
    for step in range(STEPS):
        row: dict[str, object] = {"train/loss": 1.0 / (step + 1), "moe/util": np.full(8, 0.125, np.float32)}
        if step % 10 == 9:
            row["val/loss"] = 2.0 / (step + 1)
        run.log(row)
    run.finish(exit_code=exit_code)
    return run.id


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """Three runs in two projects, one failed, written in order dense, moe-lb, moe-nolb."""
    directory = tmp_path / "store"
    log_run(directory, "dense", project="lm", config={"lr": 0.001, "model": {"layers": 4}}, tags=["baseline"])
    log_run(directory, "moe-lb", config={"lr": 0.0003}, group="sweep", notes="with load balancing")
    log_run(directory, "moe-nolb", exit_code=1)
    return directory


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def table_rows(output: str) -> dict[str, list[str]]:
    """`ls` output as {run name: cells}, header excluded."""
    lines = [line.split() for line in output.strip().splitlines()]
    return {cells[0]: cells for cells in lines[1:] if cells}


def test_ls_cuts_a_long_run_name_not_the_other_columns(store: Path) -> None:
    long_name = "sweep-" + "-".join(f"lr{i}e-4_wd0.{i}_bs{64 * i}_warmup{100 * i}" for i in range(1, 6))
    run_id = log_run(store, long_name)
    result = invoke("ls", "--dir", str(store))
    first = result.output.splitlines()[1].split()
    assert first[0].startswith("sweep-lr1e-4") and first[0].endswith("…") and len(first[0]) <= 40
    assert first[1:5] == [run_id, "moe", "finished", str(STEPS - 1)]
    assert table_rows(result.output)["dense"][1] == expertrack.Api(store).run("dense").id  # whole ids


def test_ls_lists_runs_newest_first_with_state_steps_and_losses(store: Path) -> None:
    result = invoke("ls", "--dir", str(store))
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header == ["name", "id", "project", "state", "step", "duration", "train/loss", "val/loss"]
    rows = table_rows(result.output)
    assert list(rows) == ["moe-nolb", "moe-lb", "dense"]
    runs = {r.name: r for r in expertrack.Api(store).runs()}
    dense = rows["dense"]
    assert dense[1:5] == [runs["dense"].id, "lm", "finished", str(STEPS - 1)]
    assert dense[6:] == ["0.02", "0.04"], "last values: 1/50 and 2/50"
    assert rows["moe-nolb"][3] == "failed"


def test_ls_filters_by_project_state_and_limit(store: Path) -> None:
    assert list(table_rows(invoke("ls", "--dir", str(store), "--project", "moe").output)) == ["moe-nolb", "moe-lb"]
    assert list(table_rows(invoke("ls", "--dir", str(store), "--state", "failed").output)) == ["moe-nolb"]
    limited = invoke("ls", "--dir", str(store), "-n", "1")
    assert list(table_rows(limited.output.split("(")[0])) == ["moe-nolb"]
    assert "2 older runs not shown" in limited.output


def test_ls_chosen_keys(store: Path) -> None:
    result = invoke("ls", "--dir", str(store), "--keys", "val/loss,no/such")
    assert result.output.splitlines()[0].split()[-2:] == ["val/loss", "no/such"]
    assert table_rows(result.output)["dense"][-2:] == ["0.04", "-"]


def test_ls_uses_expertrack_dir(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPERTRACK_DIR", str(store))
    assert set(table_rows(invoke("ls").output)) == {"dense", "moe-lb", "moe-nolb"}


def test_no_store_is_reported_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = CliRunner().invoke(cli, ["ls", "--dir", str(missing)])
    assert result.exit_code == 0
    assert f"no runs in {missing}" in result.output
    shown = CliRunner().invoke(cli, ["show", "abc", "--dir", str(missing)])
    assert shown.exit_code == 2
    assert f"no runs in {missing}" in shown.output
    assert not missing.exists()


def test_a_file_that_is_not_a_store_gives_a_clear_error(tmp_path: Path) -> None:
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "store.db").write_bytes(b"this is not sqlite" * 100)
    result = CliRunner().invoke(cli, ["ls", "--dir", str(directory)])
    assert result.exit_code == 1
    assert "not a usable expertrack store" in result.output
    assert "Traceback" not in result.output


def test_show_reports_header_config_summary_metrics_arrays_and_files(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    run = expertrack.init(
        project="moe", name="moe-lb", dir=str(directory), mirror="off", config={"lr": 3e-4, "model": {"experts": 8}},
        tags=["moe", "lb"], group="sweep", notes="with load balancing",
    )  # fmt: skip
    for step in range(STEPS):
        run.log({"train/loss": 1.0 / (step + 1), "moe/util": np.full((2, 8), 0.125, np.float32)})
    run.log({"val/loss": float("inf")})
    run.attach_file("notes.txt", b"x" * 2048)
    wait_for_environment(directory, run.id)
    run.finish()

    result = invoke("show", run.id[:5], "--dir", str(directory))
    assert result.exit_code == 0, result.output
    out = result.output
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert out.lstrip().startswith(f"run {run.id}")
    assert lines["name"] == ["moe-lb"] and lines["project"] == ["moe"] and lines["group"] == ["sweep"]
    assert lines["tags"] == ["moe,", "lb"] and lines["notes"] == ["with", "load", "balancing"]
    assert lines["state"] == ["finished"] and lines["exit"] == ["0"]
    assert lines["lr"] == ["0.0003"], "config value"
    assert lines["model/experts"] == ["8"], "nested config flattened"
    assert lines["train/loss"][:5] == [str(STEPS), str(STEPS - 1), "0.02", "0.02", "1"]
    assert lines["val/loss"][:3] == ["1", str(STEPS), "inf"]
    assert lines["moe/util"] == [str(STEPS), str(STEPS - 1), "2x8", "float32"]
    assert lines["notes.txt"] == ["2.0", "KB"]
    assert lines["cwd"] == [str(Path.cwd())]
    assert lines["python"][0] == ".".join(map(str, sys.version_info[:3]))
    assert "numpy" in " ".join(lines["packages"])


def wait_for_environment(directory: Path, run_id: str, timeout: float = 30.0) -> None:
    """The environment is captured off the caller's thread; wait until the store has it before finishing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        api = expertrack.Api(directory)
        captured = bool(api.run(run_id).environment)
        api.close()
        if captured:
            return
        time.sleep(0.05)
    raise AssertionError("the run's environment never reached the store")


def test_show_by_full_id_and_by_name_agree(store: Path) -> None:
    run = expertrack.Api(store).run("moe-lb")
    by_name = invoke("show", "moe-lb", "--dir", str(store)).output
    by_id = invoke("show", run.id, "--dir", str(store)).output
    strip_duration = [line for line in by_name.splitlines() if "duration" not in line]
    assert strip_duration == [line for line in by_id.splitlines() if "duration" not in line]


def test_ambiguous_and_unknown_runs_exit_2_listing_candidates(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    first = log_run(directory, "twin", id="abc111")
    second = log_run(directory, "twin", id="abc222")
    for ref in ("twin", "abc"):
        result = CliRunner().invoke(cli, ["show", ref, "--dir", str(directory)])
        assert result.exit_code == 2
        assert "matches 2 runs" in result.output
        assert first in result.output and second in result.output
    unknown = CliRunner().invoke(cli, ["export", "zzz", "--dir", str(directory)])
    assert unknown.exit_code == 2
    assert "no run matches 'zzz'" in unknown.output
    assert first in unknown.output, "recent runs are listed to pick from"
    assert "Traceback" not in unknown.output


def test_export_csv_has_every_step_and_value(store: Path) -> None:
    result = invoke("export", "dense", "--dir", str(store))
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == STEPS
    assert list(rows[0]) == ["_step", "_timestamp", "train/loss", "val/loss"]
    for row in rows:
        step = int(row["_step"])
        assert float(row["train/loss"]) == 1.0 / (step + 1)
        assert row["val/loss"] == ("" if step % 10 != 9 else repr(2.0 / (step + 1)))


def test_export_keys_take_globs_and_unknown_keys_fail(store: Path) -> None:
    result = invoke("export", "dense", "--dir", str(store), "--keys", "val/*")
    assert result.output.splitlines()[0] == "_step,_timestamp,val/loss"
    assert len(result.output.splitlines()) == 1 + STEPS // 10
    bad = CliRunner().invoke(cli, ["export", "dense", "--dir", str(store), "--keys", "nope/*"])
    assert bad.exit_code == 2
    assert "no metric key matches 'nope/*'" in bad.output and "train/loss" in bad.output


def log_odd_run(directory: Path) -> None:
    """A run named "odd": NaN, +inf and -inf values, and a key missing at step 1."""
    run = expertrack.init(project="p", name="odd", dir=str(directory), mirror="off")
    run.log({"a": 1.0, "b": float("nan")})
    run.log({"a": float("inf")})
    run.log({"a": -float("inf"), "b": 2.5})
    run.finish()


def test_export_jsonl_keeps_nan_and_inf_and_leaves_missing_keys_out(tmp_path: Path) -> None:
    log_odd_run(tmp_path / "store")
    result = invoke("export", "odd", "--dir", str(tmp_path / "store"), "--format", "jsonl")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["_step"] for r in rows] == [0, 1, 2]
    assert rows[0]["a"] == 1.0 and math.isnan(rows[0]["b"])
    assert rows[1]["a"] == math.inf and "b" not in rows[1]
    assert rows[2] == {"_step": 2, "_timestamp": rows[2]["_timestamp"], "a": -math.inf, "b": 2.5}


def test_export_csv_tells_a_logged_nan_from_a_key_not_logged(tmp_path: Path) -> None:
    log_odd_run(tmp_path / "store")
    result = invoke("export", "odd", "--dir", str(tmp_path / "store"), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [(r["a"], r["b"]) for r in rows] == [("1.0", "nan"), ("inf", ""), ("-inf", "2.5")]
    back = pd.read_csv(io.StringIO(result.output))  # pandas reads both as NaN, as before
    assert math.isnan(back["b"][0]) and math.isnan(back["b"][1]) and back["a"][1] == math.inf


def test_export_parquet_to_a_file(store: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    target = tmp_path / "dense.parquet"
    result = invoke("export", "dense", "--dir", str(store), "--format", "parquet", "-o", str(target))
    assert result.exit_code == 0
    frame = pd.read_parquet(target)
    assert list(frame["_step"]) == list(range(STEPS))
    assert frame["train/loss"].tolist() == [1.0 / (s + 1) for s in range(STEPS)]


def test_export_parquet_without_pyarrow_names_the_extra(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    result = CliRunner().invoke(cli, ["export", "dense", "--dir", str(store), "--format", "parquet"])
    assert result.exit_code == 1
    assert "pip install 'expertrack[parquet]'" in result.output


def test_rm_asks_first_and_keeps_the_run_when_refused(store: Path) -> None:
    refused = CliRunner().invoke(cli, ["rm", "dense", "--dir", str(store)], input="n\n")
    assert refused.exit_code == 1
    assert "Delete 1 run from" in refused.output
    assert {r.name for r in expertrack.Api(store).runs()} == {"dense", "moe-lb", "moe-nolb"}
    accepted = invoke("rm", "dense", "--dir", str(store), input="y\n")
    assert accepted.exit_code == 0
    assert {r.name for r in expertrack.Api(store).runs()} == {"moe-lb", "moe-nolb"}


def test_rm_deletes_nothing_unless_every_run_is_found(store: Path) -> None:
    result = CliRunner().invoke(cli, ["rm", "dense", "no-such-run", "--yes", "--dir", str(store)])
    assert result.exit_code == 2
    assert len(expertrack.Api(store).runs()) == 3


def test_console_script_lists_shows_exports_and_removes(store: Path) -> None:
    listed = expertrack_cli("ls", "--dir", str(store))
    assert listed.returncode == 0, listed.stderr
    assert set(table_rows(listed.stdout)) == {"dense", "moe-lb", "moe-nolb"}
    shown = expertrack_cli("show", "moe-lb", "--dir", str(store))
    assert shown.returncode == 0, shown.stderr
    assert "with load balancing" in shown.stdout and "train/loss" in shown.stdout
    exported = expertrack_cli("export", "moe-lb", "--format", "jsonl", "--dir", str(store))
    assert len(exported.stdout.splitlines()) == STEPS
    unknown = expertrack_cli("show", "nope", "--dir", str(store))
    assert unknown.returncode == 2 and "no run matches 'nope'" in unknown.stderr
    removed = expertrack_cli("rm", "moe-lb", "moe-nolb", "--yes", "--dir", str(store))
    assert removed.returncode == 0, removed.stderr
    assert [r.name for r in expertrack.Api(store).runs()] == ["dense"]


def test_running_and_killed_runs_show_their_state_and_signal(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    killed = expertrack.init(project="p", name="stopped", dir=str(directory), mirror="off")
    killed.log({"loss": 1.0})
    killed.finish(exit_code=130, signal=2)
    live = expertrack.init(project="p", name="live", dir=str(directory), mirror="off")
    live.log({"loss": 2.0})
    assert live.flush()
    try:
        running = invoke("ls", "--dir", str(directory), "--state", "running")
        assert list(table_rows(running.output)) == ["live"]
        assert table_rows(running.output)["live"][4] == "0"
        shown = invoke("show", "stopped", "--dir", str(directory)).output
        assert "killed" in shown and "130 (signal 2)" in shown
    finally:
        live.finish()


def test_show_env_lists_variables_with_secrets_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "store"
    monkeypatch.setenv("WANDB_API_KEY", "secret-value-123")
    monkeypatch.setenv("MY_EXPERIMENT_SEED", "17")
    run = expertrack.init(project="p", name="envy", dir=str(directory), mirror="off")
    run.log({"loss": 1.0})
    wait_for_environment(directory, run.id)
    run.finish()
    plain = invoke("show", "envy", "--dir", str(directory)).output
    assert "MY_EXPERIMENT_SEED" not in plain, "variables are listed only with --env"
    shown = invoke("show", "envy", "--dir", str(directory), "--env").output
    lines = {line.split()[0]: line.split()[1:] for line in shown.splitlines() if line.strip()}
    assert lines["MY_EXPERIMENT_SEED"] == ["17"]
    assert lines["WANDB_API_KEY"] == ["[redacted]"]
    assert "secret-value-123" not in shown


def test_ls_shows_the_last_value_even_when_the_summary_keeps_the_minimum(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    run = expertrack.init(project="p", name="best", dir=str(directory), mirror="off")
    run.define_metric("val/*", summary="min")
    for value in (3.0, 1.0, 2.0):
        run.log({"val/loss": value, "train/loss": value * 10})
    run.finish()
    assert expertrack.Api(directory).run("best").summary["val/loss"] == {"min": 1.0}
    row = table_rows(invoke("ls", "--dir", str(directory)).output)["best"]
    assert row[-2:] == ["20", "2"], "train/loss and val/loss as last logged"
