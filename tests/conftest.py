"""Shared fixtures: every test gets its own tracking directory, and no run outlives its test."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import expertrack
from expertrack import session
from tests.pg import PostgresServer, PostgresUnavailable

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def tracking_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh tracking directory for the test, also exported as EXPERTRACK_DIR for child processes.

    Temporary files (a run that falls back to a temporary directory, tests that make their own) go below the
    test's own directory too, here and in child processes, so the machine's /tmp is not filled by test runs.
    """
    directory = tmp_path / "runs"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setenv("EXPERTRACK_DIR", str(directory))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("EXPERTRACK_MODE", raising=False)
    # system metrics (a sampler thread, system/... series) only where a test asks for them: tests/system/
    monkeypatch.setenv("EXPERTRACK_SYSTEM_METRICS", "off")
    yield directory
    run = session.current_run()
    if run is not None:
        run.finish()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (tests/pg.py), stopped and deleted at the end. Missing
    server binaries fail the tests that need it, with the reason: never a skip."""
    try:
        server = PostgresServer.start_new()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.remove()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL (with its password) of a fresh, empty database on the session's server."""
    if not (postgres_server.data / "postmaster.pid").exists():  # a test stopped it and did not restart it
        postgres_server.start()
    return postgres_server.new_database()


def run_python(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with this repo's package, returning its completed process."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def expertrack_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``expertrack`` console script as a user would."""
    exe = Path(sys.executable).with_name("expertrack")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, timeout=timeout, input=input)


__all__ = ["REPO", "expertrack", "expertrack_cli", "run_python"]
