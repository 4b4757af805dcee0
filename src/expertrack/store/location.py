"""Store locations: a tracking directory or store file (SQLite), or a ``postgresql://`` URL (a shared server).

Every reader and every copy between stores opens a store through ``open_store(location)``; ``describe(location)``
is the form safe to print (a URL's password removed), used in every message that names a store.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from expertrack.paths import STORE_FILE

POSTGRES_SCHEMES = ("postgresql", "postgres")
# what is left of a password after the URL's own parts are cleaned: "//user:secret@" and "password=secret" anywhere
# (a mistyped URL can hold another URL in its path, and its password with it)
_USER_PASSWORD = re.compile(r"(//[^/:@\s]*):[^@\s]*@")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def is_postgres(location: str | os.PathLike[str] | None) -> bool:
    """Whether ``location`` names a PostgreSQL database (``postgresql://...`` or ``postgres://...``)."""
    return isinstance(location, str) and location.split("://", 1)[0].lower() in POSTGRES_SCHEMES and "://" in location


def describe(location: str | os.PathLike[str]) -> str:
    """``location`` as it may be printed: a URL without its password (user, host, port and database kept)."""
    if not is_postgres(location):
        return str(location)
    parts = urlsplit(str(location))
    netloc = parts.netloc
    if "@" in netloc:
        user_info, host = netloc.rsplit("@", 1)
        user = user_info.split(":", 1)[0]
        netloc = f"{user}@{host}" if user else host
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("password="))
    shown = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    return _PASSWORD_PARAM.sub(r"\1***", _USER_PASSWORD.sub(r"\1@", shown))


def reading_location(dir: str | os.PathLike[str] | None) -> str | Path:
    """What a reader given ``dir`` reads: ``dir``, else ``$EXPERTRACK_DIR``, else ./expertrack-runs; a
    ``postgresql://`` URL as it is (so ``$EXPERTRACK_DIR`` naming the team's database shows that database, where
    the runs a writer replicates go), else that tracking directory."""
    from expertrack.paths import ENV_DIR, tracking_dir

    given = str(dir) if dir is not None and str(dir) else os.environ.get(ENV_DIR, "").strip()
    if is_postgres(given):
        return given

    return tracking_dir(dir)


def sqlite_path(location: str | os.PathLike[str]) -> Path:
    """The store file a local location names: a directory's ``store.db``, or the ``.db`` file itself."""
    path = Path(location).expanduser()
    if path.suffix == ".db" and not path.is_dir():
        return path.resolve()
    return (path / STORE_FILE).resolve()


def open_store(location: str | os.PathLike[str], readonly: bool = False) -> Any:
    """Open the store at ``location`` (a directory, a ``.db`` file or a ``postgresql://`` URL): an
    ``SQLiteStore`` or a ``PostgresStore``, both ``SqlStore`` (store/sql.py). ``readonly`` refuses a location
    that holds no store instead of creating one."""
    if is_postgres(location):
        from expertrack.store.postgres import PostgresStore

        return PostgresStore(str(location), readonly=readonly)
    from expertrack.store.sqlite import SQLiteStore

    return SQLiteStore(sqlite_path(location), readonly=readonly)
