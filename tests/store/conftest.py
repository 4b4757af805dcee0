"""The store tests' reader over both engines: what the writer stored, read from SQLite and from PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from expertrack.store.location import open_store
from tests.pg import copy_into_postgres

ReadStore = Callable[[], Any]
ReadLocation = Callable[[Path], Any]


@pytest.fixture(params=["sqlite", "postgres"])
def read_store(request: pytest.FixtureRequest, tracking_dir: Path) -> Iterator[ReadStore]:
    """``read_store()`` opens the test's tracking directory for reading, as it is at that moment: the SQLite store
    itself, or a fresh PostgreSQL database the store's rows were just loaded into (tests/pg.py)."""
    opened: list[Any] = []

    def open_reader() -> Any:
        if request.param == "sqlite":
            store = open_store(tracking_dir, readonly=True)
        else:
            url = request.getfixturevalue("postgres_server").new_database()
            copy_into_postgres(tracking_dir, url)
            store = open_store(url, readonly=True)
        opened.append(store)
        return store

    yield open_reader
    for store in opened:
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def read_location(request: pytest.FixtureRequest) -> ReadLocation:
    """``read_location(directory)``: the location to read ``directory``'s runs from: the directory itself, or a
    fresh PostgreSQL database its store's rows were just loaded into (for ``Api`` and the commands)."""

    def location(directory: Path) -> Any:
        if request.param == "sqlite":
            return directory
        url = request.getfixturevalue("postgres_server").new_database()
        copy_into_postgres(directory, url)
        return url

    return location


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A new, empty, writable store of each engine: a SQLite file, or a fresh PostgreSQL database."""
    location = tmp_path / "fresh" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    store = open_store(location)
    yield store
    store.close()
