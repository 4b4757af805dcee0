"""The mirror's bookkeeping in the store's ``mirror_state`` table (created by the store's migration 1).

One row per (run, target). No row: never mirrored. ``partial``: every step up to ``cursor_step`` was handed to
W&B. ``complete``: everything, summary included, and the W&B run was finished. ``failed``: the mirror gave up;
``cursor_step`` says how far it got (NULL: nothing was sent) and ``reason`` why. Each write is its own short
transaction, so the training process's writer never waits on the mirror for long. The SQL is the store's
(``Store.read_mirror_state``, ``write_mirror_state``, ``advance_mirror_cursor``).
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from expertrack.mirror.locks import is_held
from expertrack.records import MirrorState

TARGET = "wandb"
LIVE_REASON = "live mirror running"
SYNC_REASON = "sync running"
RUNNING_REASONS = (LIVE_REASON, SYNC_REASON)
__all__ = ["MirrorState", "advance_cursor", "describe", "mirror_status", "read_state", "write_state"]


def read_state(store: Any, run_id: str, target: str = TARGET) -> MirrorState | None:
    """The mirror state of a run, or None when it was never mirrored."""
    return store.read_mirror_state(run_id, target)  # type: ignore[no-any-return]


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
    store.write_mirror_state(MirrorState(run_id, target, state, cursor_step, remote_id, reason, time.time()))


def advance_cursor(store: Any, run_id: str, cursor_step: int, target: str = TARGET) -> None:
    """Move a run's saved position to ``cursor_step``, in one short transaction: called after every
    ``wandb.log`` call that returns, so a mirror killed at any moment resends at most the step in flight."""
    store.advance_mirror_cursor(run_id, target, cursor_step)


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
