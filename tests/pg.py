"""A real PostgreSQL server for the tests: Debian's initdb and pg_ctl, in a temporary directory, stopped afterwards.

One server per test session (``PostgresServer.start_new()``, ~1-2 s), a fresh database per test (~100 ms).
It listens on loopback (a free port, password authentication, as a team's server would) and on a Unix socket in
its directory (trusted, for the fixture's own administration). PostgreSQL refuses to run as root: as root, the
server runs as the unprivileged user ``nobody``, which owns the data directory.

``stop()`` and ``start()`` take the server down and bring it back on the same port, for tests of what a store user
does while the database is away. When the binaries are missing (Debian's ``postgresql`` package; scripts/test.sh
installs it), the tests that need a server fail with a message saying so: never a skip.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

USER = "expertrack"
PASSWORD = "pg-test-secret"
UNPRIVILEGED = "nobody"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server binaries are not installed (or the server would not start)."""


def server_binaries() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` holding initdb and pg_ctl (Debian's layout), or PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and shutil.which("initdb"):
        return Path(pg_ctl).parent
    raise PostgresUnavailable(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: install Debian's `postgresql` package "
        "(scripts/test.sh does so when run as root); the PostgreSQL tests need a real server"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A running throwaway server; ``url(database)`` names one of its databases."""

    def __init__(self, root: Path, bindir: Path, port: int) -> None:
        self.root = root
        self.bindir = bindir
        self.port = port
        self.data = root / "data"
        self._numbers = itertools.count()

    @classmethod
    def start_new(cls) -> PostgresServer:
        bindir = server_binaries()
        # in /tmp itself, not below a test's own directory: the unprivileged server must reach it (pytest's
        # directories are private to their owner), and a Unix socket path must stay under ~100 characters
        root = Path(tempfile.mkdtemp(prefix="expertrack-pg-", dir="/tmp"))
        server = cls(root, bindir, _free_port())
        try:
            server._init()
            server.start()
        except BaseException:
            server.remove()
            raise
        return server

    # ---- running the server's programs ------------------------------------------------------------------------

    def _as_owner(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", UNPRIVILEGED, "--", *args]
        return args

    def _run(self, *args: str) -> None:
        command = self._as_owner([str(self.bindir / args[0]), *args[1:]])
        try:
            proc = subprocess.run(command, capture_output=True, text=True)
        except FileNotFoundError as exc:  # runuser (util-linux) missing: root cannot start PostgreSQL without it
            raise PostgresUnavailable(f"cannot run {command[0]}: {exc}") from exc
        if proc.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:] if self._has_log() else ""
            raise PostgresUnavailable(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def _has_log(self) -> bool:
        return (self.root / "server.log").exists()

    def _init(self) -> None:
        self.root.chmod(0o755)
        password_file = self.root / "pwfile"
        password_file.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, UNPRIVILEGED)
            shutil.chown(password_file, UNPRIVILEGED)
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={password_file}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        password_file.unlink()

    def start(self) -> None:
        """Start (or restart after ``stop()``) the server, on the same port; returns once it accepts connections.

        ``fsync=off`` (the tests need no protection from power cuts) but commits reach the WAL before they are
        answered, so ``stop()`` loses nothing that was committed, as with a real server."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options)  # fmt: skip

    def stop(self) -> None:
        """Stop the server at once (as a crash or a network cut looks to its clients); ``start()`` brings it back."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))

    def remove(self) -> None:
        """Stop the server if it runs, and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop()
            except PostgresUnavailable:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- databases --------------------------------------------------------------------------------------------

    def url(self, database: str, password: str | None = PASSWORD) -> str:
        """A ``postgresql://`` URL of ``database`` over loopback, with the password (or ``password``)."""
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str = "postgres") -> Any:
        """An autocommit psycopg connection over the Unix socket (trusted), for the fixture's own work."""
        import psycopg

        return psycopg.connect(host=str(self.root), port=self.port, user=USER, dbname=database, autocommit=True)

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        name = f"test_{os.getpid()}_{next(self._numbers)}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def copy_into_postgres(source_dir: Path, url: str) -> None:
    """Load every run of the SQLite store in ``source_dir`` into the PostgreSQL store at ``url``, row for row:
    the tests' stand-in for ``store.copy`` (same rows, same bytes), so reads can be compared engine to engine."""
    from expertrack.store.location import open_store

    source = open_store(source_dir, readonly=True)
    target = open_store(url)
    try:
        with target.transaction() as conn:
            for table, columns in _TABLES:
                have = {r[1] for r in source.conn.execute(f"PRAGMA table_info({table})")}
                names = [c for c in columns if c in have]
                rows = source.conn.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall()
                if rows:
                    conn.executemany(
                        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", rows
                    )
            for table in ("keys", "alerts"):  # ids were given explicitly: new rows must number after them
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
                    f" WHERE EXISTS (SELECT 1 FROM {table})"
                )
    finally:
        source.close()
        target.close()


# every table with its columns, parents first (foreign keys)
_TABLES = [
    ("runs", [
        "id", "project", "name", "run_group", "tags", "notes", "state", "created_at", "ended_at", "heartbeat_at",
        "exit_code", "exit_signal", "config", "summary", "metric_defs", "environment", "hostname", "pid",
        "dropped_points",
    ]),
    ("keys", ["id", "run_id", "name", "rank"]),
    ("scalar_chunks", ["key_id", "seq", "n", "step_min", "step_max", "steps", "times", "vals"]),
    ("scalar_levels", ["key_id", "seq", "n", "step_min", "step_max", "picks", "steps", "vals"]),
    ("scalar_pieces", ["run_id", "seq", "n", "step_max", "keys", "steps", "times", "vals"]),
    ("arrays", ["key_id", "step", "time", "dtype", "shape", "nbytes"]),
    ("array_data", ["key_id", "step", "data"]),
    ("files", ["run_id", "name", "seq", "created_at", "size", "data"]),
    ("alerts", ["id", "run_id", "rule", "key", "step", "value", "time", "message"]),
    ("run_ranks", [
        "run_id", "rank", "state", "node", "pid", "started_at", "heartbeat_at", "ended_at", "exit_code",
        "dropped_points",
    ]),
    ("mirror_state", ["run_id", "target", "state", "cursor_step", "remote_id", "reason", "updated_at"]),
]  # fmt: skip
