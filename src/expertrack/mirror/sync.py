"""``expertrack sync``: replay stored runs into W&B, each from its cursor, so running it twice sends nothing twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertrack.mirror import guard
from expertrack.mirror.locks import RunLock
from expertrack.mirror.state import describe, read_state


@dataclass
class SyncResult:
    """What ``sync`` did with one run."""

    run_id: str
    name: str
    action: str  # sent | up-to-date | skipped | failed
    detail: str
    steps_sent: int = 0
    hung: bool = False


def pending_reason(store: Any, run_id: str) -> str | None:
    """Why a run needs no sync now ("complete", "still running", ...), or None when it has steps to send."""
    record = store.run(run_id)
    if record.state == "running":
        return "still running: its live mirror sends it, or sync it once it has ended"
    state = read_state(store, run_id)
    if state is None or state.state != "complete":
        return None
    last = store.last_step(run_id)
    if last is not None and (state.cursor_step is None or last > state.cursor_step):
        return None  # resumed and extended after its mirror completed
    return describe(state)


def sync_runs(
    store_path: str | Path, run_ids: list[str], wandb: Any, stall_s: float = guard.STALL_S
) -> Iterator[SyncResult]:
    """Replay each run that needs it; yields one result per run, in order.

    After W&B stops answering (a hang), the remaining runs are reported as skipped: this process can no
    longer use wandb.
    """
    from expertrack.store import SQLiteStore

    hung = False
    for run_id in run_ids:
        with SQLiteStore(store_path) as store:
            record = store.run(run_id)
            skip = "not tried: W&B stopped answering earlier in this sync" if hung else pending_reason(store, run_id)
        if skip is not None:
            yield SyncResult(run_id, record.name, "up-to-date" if skip.startswith("complete") else "skipped", skip)
            continue
        lock = RunLock(store_path, run_id)
        if not lock.acquire():
            yield SyncResult(run_id, record.name, "skipped", "another mirror process is sending this run now")
            continue
        try:
            outcome = guard.mirror_run(store_path, run_id, wandb, follow=False, stall_s=stall_s)
        finally:
            lock.release()
        hung = hung or outcome.hung
        if outcome.state == "complete":
            where = f" ({outcome.remote_id})" if outcome.remote_id else ""
            yield SyncResult(run_id, record.name, "sent", f"complete{where}", outcome.steps_sent)
        else:
            where = f"up to step {outcome.cursor}" if outcome.cursor is not None else "nothing sent"
            yield SyncResult(
                run_id,
                record.name,
                "failed",
                f"{outcome.state}, {where}: {outcome.reason}",
                outcome.steps_sent,
                outcome.hung,
            )
