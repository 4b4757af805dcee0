"""Store locations: how a URL is shown (never with its password) and which engine a location opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from expertrack.store.location import describe, is_postgres, open_store, sqlite_path
from tests.conftest import expertrack_cli
from tests.pg import PASSWORD


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://team:s3cret@db.lab:5432/runs", "postgresql://team@db.lab:5432/runs"),
        ("postgres://:s3cret@db.lab/runs", "postgres://db.lab/runs"),
        (
            "postgresql://db.lab/runs?user=team&password=s3cret&sslmode=require",
            "postgresql://db.lab/runs?user=team&sslmode=require",
        ),
        # a URL pasted twice: the second one's password is in the first one's path
        (
            "postgresql://team:s3cret@db.lab/postgresql://team:s3cret@db.lab/runs",
            "postgresql://team@db.lab/postgresql://team@db.lab/runs",
        ),
        ("postgresql://db.lab/runs?sslmode=require&PASSWORD=s3cret#x", "postgresql://db.lab/runs?sslmode=require"),
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert describe(url) == shown
    assert "s3cret" not in describe(url)


def test_local_locations_open_sqlite_and_urls_are_recognised(tmp_path: Path) -> None:
    assert sqlite_path(tmp_path) == (tmp_path / "store.db").resolve()
    assert sqlite_path(tmp_path / "other.db") == (tmp_path / "other.db").resolve()
    assert is_postgres("postgresql://h/db") and is_postgres("POSTGRES://h/db")
    assert not is_postgres(str(tmp_path)) and not is_postgres("modal://volume") and not is_postgres(None)
    with open_store(tmp_path) as store:
        assert type(store).__name__ == "SQLiteStore" and store.runs() == []


def test_readers_follow_expertrack_dir_naming_a_database(
    tracking_dir: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$EXPERTRACK_DIR set to the team's database: `ls` and `Api()` read that database (where a writer with the
    same setting replicates its runs), never a directory named after the URL."""
    import expertrack
    from expertrack.store.copy import copy_runs

    run = expertrack.init(project="shared", name="on-the-server", mirror="off")
    run.log({"loss": 1.5})
    run.finish()
    with open_store(tracking_dir, readonly=True) as source, open_store(postgres_url) as target:
        copy_runs(source, target)
    listed = expertrack_cli("ls", env={"EXPERTRACK_DIR": postgres_url})
    assert listed.returncode == 0 and "on-the-server" in listed.stdout, listed.stderr
    assert PASSWORD not in listed.stdout + listed.stderr
    monkeypatch.setenv("EXPERTRACK_DIR", postgres_url)
    api = expertrack.Api()
    assert [r.name for r in api.runs()] == ["on-the-server"]
    api.close()
    assert not list(Path.cwd().glob("postgres*"))
