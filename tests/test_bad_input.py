"""Bad input gets a clear message, the training loop goes on, and nothing already recorded is lost."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

import expertrack


def test_wrong_value_types_are_reported_once_and_other_keys_kept(capsys: pytest.CaptureFixture[str]) -> None:
    run = expertrack.init(project="bad")
    for i in range(3):
        run.log({"loss": float(i), "text": "hello", "obj": object(), "none": None, 7: 1.0})
    run.finish()
    err = capsys.readouterr().err
    assert err.count("'text' is a str") == 1
    assert "'obj' is a object" in err and "'none' is a NoneType" in err
    assert "key 7 is a int, not a string" in err
    stored = expertrack.Api(run.dir).run(run.id)
    assert stored.scalars("loss")[2].tolist() == [0.0, 1.0, 2.0]
    assert stored.metric_keys() == ["loss"]


def test_keys_the_store_cannot_take(capsys: pytest.CaptureFixture[str]) -> None:
    run = expertrack.init(project="bad")
    run.log({"ok": 1.0, "": 2.0, "nul\x00key": 3.0, "surrogate\ud800": 4.0, "x" * 1000: 5.0})
    run.finish()
    err = capsys.readouterr().err
    assert "is empty" in err and "NUL" in err and "surrogate" in err and "longer than" in err
    assert expertrack.Api(run.dir).run(run.id).metric_keys() == ["ok"]


def test_huge_dict_is_stored() -> None:
    run = expertrack.init(project="bad")
    run.log({f"m{i}": float(i) for i in range(20_000)})
    run.log({"after": 1.0})
    run.finish()
    stored = expertrack.Api(run.dir).run(run.id)
    assert len(stored.metric_keys()) == 20_001
    assert stored.scalars("m19999")[2].tolist() == [19999.0]


def test_an_int_too_large_for_a_float_costs_only_itself(capsys: pytest.CaptureFixture[str]) -> None:
    run = expertrack.init(project="bad")
    run.log({"n": 10**400, "loss": 1.0})
    run.log({"n": 10**400, "loss": 0.5})
    run.log({"n": 3, "loss": 0.25})
    run.finish()  # at once: the bad value is absorbed by the very last flush
    err = capsys.readouterr().err
    assert err.count("'n'") == 1 and "OverflowError" in err
    stored = expertrack.Api(run.dir).run(run.id)
    assert stored.state == "finished"
    assert stored.scalars("loss")[2].tolist() == [1.0, 0.5, 0.25]
    assert stored.scalars("n")[0].tolist() == [2] and stored.summary["n"] == 3.0


def test_a_failure_in_the_last_flush_still_writes_the_rest(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from expertrack.summary import SummaryState

    original = SummaryState.update
    calls = []

    def fails_once(self: SummaryState, key: str, values: object) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("an unexpected bug while absorbing")
        original(self, key, values)

    monkeypatch.setattr(SummaryState, "update", fails_once)
    run = expertrack.init(project="bad")
    run.log({"loss": 1.0})
    run.finish()
    assert "an unexpected bug" in capsys.readouterr().err
    stored = expertrack.Api(run.dir).run(run.id)
    assert stored.state == "finished" and stored.scalars("loss")[2].tolist() == [1.0]


def test_a_store_error_in_the_last_flush_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from expertrack.writer import Writer

    original = Writer._write
    failures = []

    def fails_once(self: Writer) -> None:
        if not failures:
            failures.append(1)
            raise sqlite3.OperationalError("disk I/O error")
        original(self)

    run = expertrack.init(project="bad")
    monkeypatch.setattr(Writer, "_write", fails_once)
    run.log({"loss": 1.0})
    run.finish()
    stored = expertrack.Api(run.dir).run(run.id)
    assert failures and stored.state == "finished" and stored.scalars("loss")[2].tolist() == [1.0]


def test_a_run_deleted_while_training_is_said_once_and_training_goes_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = expertrack.init(project="bad")
    run.log({"loss": 1.0})
    run.flush()
    expertrack.Api(run.dir).delete_run(run.id)  # what `expertrack rm` does
    for i in range(3):
        for _ in range(1000):
            run.log({"loss": float(i), f"new/{i}": 1.0})
        run.config[f"c{i}"] = i
        run.summary[f"s{i}"] = i
        assert run.flush()
        assert not run._writer.queue and not run._writer._series  # nothing kept in memory for a deleted run
    run.finish()
    err = capsys.readouterr().err
    assert err.count("was deleted") == 1 and "nothing more is stored" in err
    assert "could not write" not in err
    assert expertrack.Api(run.dir).runs() == []


def test_log_of_a_non_dict_is_a_type_error() -> None:
    run = expertrack.init(project="bad")
    with pytest.raises(TypeError, match="takes a dict"):
        run.log([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an integer"):
        run.log({"x": 1.0}, step="3")  # type: ignore[arg-type]


def _make_read_only(path: Path) -> None:
    if os.geteuid() == 0:  # root ignores permission bits; the immutable attribute stops root too
        proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot make a directory read-only for root here: {proc.stderr.strip()}")
    else:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)


def test_read_only_directory_falls_back_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    _make_read_only(locked)
    try:
        run = expertrack.init(project="bad", dir=locked / "runs")
        run.log({"loss": 1.0})
        run.finish()
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(locked)], check=False)
        locked.chmod(0o755)
    err = capsys.readouterr().err
    assert f"cannot use the store in {locked / 'runs'}" in err and "kept in" in err
    assert not (locked / "runs").exists()
    assert expertrack.Api(run.dir).run(run.id).scalars("loss")[2].tolist() == [1.0]


def test_a_store_in_a_read_only_directory_can_still_be_read(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    run = expertrack.init(project="old", dir=archive)
    run.log({"loss": 0.5})
    run.finish()
    _make_read_only(archive)  # an archived or read-only mounted directory: no -shm file can be created there
    try:
        api = expertrack.Api(archive)
        assert [r.id for r in api.runs()] == [run.id]
        assert api.run(run.id).scalars("loss")[2].tolist() == [0.5]
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(archive)], check=False)
        archive.chmod(0o755)


def test_unwritable_directory_falls_back_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run = expertrack.init(project="bad", dir=blocker / "runs")  # a path that cannot be created, even as root
    run.log({"loss": 1.0})
    run.finish()
    err = capsys.readouterr().err
    assert f"cannot use the store in {blocker / 'runs'}" in err
    assert run.dir != blocker / "runs"
    assert expertrack.Api(run.dir).run(run.id).scalars("loss")[2].tolist() == [1.0]


def test_missing_directory_is_created(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "new" / "runs"
    run = expertrack.init(project="bad", dir=target)
    run.log({"loss": 1.0})
    run.finish()
    assert (target / "store.db").exists()


def test_store_file_that_is_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "runs"
    target.mkdir()
    (target / "store.db").write_bytes(b"this is a text file, not SQLite" * 100)
    run = expertrack.init(project="bad", dir=target)
    run.log({"loss": 1.0})
    run.finish()
    err = capsys.readouterr().err
    assert "not a usable expertrack store" in err
    assert (target / "store.db").read_bytes().startswith(b"this is a text file")  # the user's file is untouched
    assert expertrack.Api(run.dir).run(run.id).scalars("loss")[2].tolist() == [1.0]
    with pytest.raises(expertrack.StoreError, match="not a usable expertrack store"):
        expertrack.Api(target).runs()


def test_another_programs_sqlite_file_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    target = tmp_path / "runs"
    target.mkdir()
    with sqlite3.connect(target / "store.db") as conn:  # someone else's database, with a schema version set
        conn.execute("CREATE TABLE runs (x)")
        conn.execute("PRAGMA user_version = 1")
    with pytest.raises(expertrack.StoreError, match="is an SQLite database, but not an expertrack store"):
        expertrack.Api(target).runs()
    run = expertrack.init(project="bad", dir=target)
    run.log({"loss": 1.0})
    run.finish()
    assert "not an expertrack store" in capsys.readouterr().err
    assert run.dir != target and expertrack.Api(run.dir).run(run.id).scalars("loss")[2].tolist() == [1.0]


def test_a_very_long_key_is_said_once_and_shortened(tracking_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = "k" * 10_000
    run = expertrack.init(project="long-key")
    run.log({key: 1.0, "loss": 0.5})
    run.log({key: "text", "loss": 0.25})
    run.log({key: np.ones(3), "loss": 0.125})
    run.finish()
    lines = [line for line in capsys.readouterr().err.splitlines() if "kkkk" in line]
    assert len(lines) == 1, lines
    assert "(10,000 characters) is longer than 512 characters" in lines[0] and len(lines[0]) < 300
    assert expertrack.Api(tracking_dir).run(run.id).scalars("loss")[2].tolist() == [0.5, 0.25, 0.125]
