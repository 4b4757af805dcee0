"""The mirror's bookkeeping in the store's ``mirror_state`` table (created by the store's migration 1).

One row per (run, target). No row: never mirrored. ``partial``: every step up to ``cursor_step`` was handed to
W&B. ``complete``: everything, summary included, and the W&B run was finished. ``failed``: the mirror gave up;
``cursor_step`` says how far it got (NULL: nothing was sent) and ``reason`` why. Each write is its own short
transaction, so the training process's writer never waits on the mirror for long.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from expertrack.mirror.locks import is_held

TARGET = "wandb"
LIVE_REASON = "live mirror running"
SYNC_REASON = "sync running"
RUNNING_REASONS = (LIVE_REASON, SYNC_REASON)


@dataclass
class MirrorState:
    """One row of ``mirror_state``."""

    run_id: str
    target: str
    state: str  # partial | complete | failed
    cursor_step: int | None
    remote_id: str | None
    reason: str | None
    updated_at: float


def _conn(store: Any) -> sqlite3.Connection:
    return store.conn if hasattr(store, "conn") else store


def read_state(store: Any, run_id: str, target: str = TARGET) -> MirrorState | None:
    """The mirror state of a run, or None when it was never mirrored."""
    row = (
        _conn(store)
        .execute(
            "SELECT run_id, target, state, cursor_step, remote_id, reason, updated_at FROM mirror_state"
            " WHERE run_id = ? AND target = ?",
            (run_id, target),
        )
        .fetchone()
    )
    return None if row is None else MirrorState(*row)


def write_state(
    store: Any,
    run_id: str,
    state: str,
    cursor_step: int | None,
    remote_id: str | None = None,
    reason: str | None = None,
    target: str = TARGET,
) -> None:
    """Insert or replace the mirror state of a run, in one short transaction."""
    conn = _conn(store)
    with _immediate(conn):
        conn.execute(
            "INSERT OR REPLACE INTO mirror_state (run_id, target, state, cursor_step, remote_id, reason, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, target, state, cursor_step, remote_id, reason, time.time()),
        )


def advance_cursor(store: Any, run_id: str, cursor_step: int, target: str = TARGET) -> None:
    """Move a run's saved position to ``cursor_step``, in one short autocommit statement: called after every
    ``wandb.log`` call that returns, so a mirror killed at any moment resends at most the step in flight."""
    _conn(store).execute(
        "UPDATE mirror_state SET cursor_step = ?, updated_at = ? WHERE run_id = ? AND target = ?",
        (cursor_step, time.time(), run_id, target),
    )


class _immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or a plain block when the caller already holds a transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.own = not conn.in_transaction

    def __enter__(self) -> None:
        if self.own:
            self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.own:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def describe(state: MirrorState | None) -> str:
    """A line for ``expertrack show``: "complete", "partial up to step N (reason)", "never started (reason)"."""
    if state is None:
        return "never mirrored (run `expertrack sync` to mirror it)"
    if state.state == "complete":
        where = f" ({state.remote_id})" if state.remote_id else ""
        return f"complete{where}"
    why = f" ({state.reason})" if state.reason else ""
    if state.cursor_step is None:
        return f"never started{why}"
    return f"partial up to step {state.cursor_step}{why}"


def mirror_status(store: Any, run_id: str) -> str:
    """The W&B mirror's state of a run, as one line (what ``expertrack show`` prints)."""
    try:
        state = read_state(store, run_id)
    except sqlite3.Error as exc:  # an old or damaged store: say so rather than break `show`
        return f"unknown ({exc})"
    if state is not None and state.state == "partial" and state.reason in RUNNING_REASONS:
        path = getattr(store, "path", None)
        if path is not None and not is_held(path, run_id):  # its process died without recording why
            state.reason = "the mirror process stopped before it finished; `expertrack sync` completes it"
    return describe(state)
