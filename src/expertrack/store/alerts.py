"""The alerts table (schema migration 4): what the alert rules raised for a run, written and read here only.

An alert is stored once, when it is raised, in the same transaction as the points the writer flushes with it, so
a crash loses it only together with those points. SQLite has no NaN: a NaN value is stored as NULL, and read back
as NaN for the ``nan`` rule (whose value is NaN by definition); +-inf are stored as they are.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

INSERT_ALERT = "INSERT INTO alerts (run_id, rule, key, step, value, time, message) VALUES (?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class AlertRecord:
    """One raised alert. ``key``, ``step`` and ``value`` are None where the rule has none (a stall has no key)."""

    rule: str
    key: str | None
    step: int | None
    value: float | None
    time: float
    message: str

    def as_dict(self) -> dict[str, Any]:
        """The dashboard's shape: ``{"rule", "key", "step", "value", "time", "message"}`` (time in unix seconds)."""
        return asdict(self)


def insert_alerts(conn: sqlite3.Connection, run_id: str, alerts: list[AlertRecord]) -> None:
    """Store ``alerts`` for ``run_id``; call inside the caller's transaction."""
    conn.executemany(
        INSERT_ALERT, [(run_id, a.rule, a.key, a.step, _storable(a.value), a.time, a.message) for a in alerts]
    )


def read_alerts(conn: sqlite3.Connection, run_id: str | None = None) -> list[tuple[str, AlertRecord]]:
    """(run id, alert) pairs in the order they were raised, for one run or for every run, from a store whose
    schema has the alerts table (``SqlStore.alerts`` answers [] for one written before it)."""
    sql = "SELECT run_id, rule, key, step, value, time, message FROM alerts"
    args: tuple[Any, ...] = ()
    if run_id is not None:
        sql, args = sql + " WHERE run_id = ?", (run_id,)
    rows = conn.execute(sql + " ORDER BY id", args).fetchall()
    return [(row[0], _record(row[1:])) for row in rows]


def _storable(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _record(row: tuple[Any, ...]) -> AlertRecord:
    rule, key, step, value, time, message = row
    if value is None and rule == "nan":
        value = math.nan
    return AlertRecord(rule, key, None if step is None else int(step), value, float(time), message)
