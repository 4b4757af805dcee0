"""Bad input gets a clear message, the training loop goes on, and nothing already recorded is lost."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

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
