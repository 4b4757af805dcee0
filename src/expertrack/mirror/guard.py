"""Drive a :class:`~expertrack.mirror.replay.Replayer` on a worker thread, watched by a deadline.

W&B may raise (caught on the worker: the cursor and the reason are recorded) or hang (a call that never
returns: the watching thread notices, records the cursor and the reason through its own connection, and gives
up on the worker, which is a daemon thread). The same function serves the live mirror (``follow=True``: keep
sending until the run ends, then catch up) and ``sync`` (send what is stored, once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expertrack.mirror.replay import Replayer
from expertrack.mirror.state import write_state

POLL_S = 1.0  # the live mirror looks for new points this often
STALL_S = 120.0  # a single W&B call may take this long (W&B's own init timeout is 90 s) before we give up
DEADLINE_S = 300.0  # after the run ends, the mirror gives up when no step went out for this long
RESCUE_S = 10.0  # after giving up, W&B gets this long to finish (and so keep) what it was given


@dataclass
class Outcome:
    """How one mirroring attempt ended."""

    run_id: str
    state: str  # complete | partial | failed
    cursor: int | None
    steps_sent: int
    reason: str | None = None
    remote_id: str | None = None
    hung: bool = False  # W&B stopped answering: this process should not call W&B again


def mirror_run(
    store_path: str | Path,
    run_id: str,
    wandb: Any,
    *,
    follow: bool = False,
    poll_s: float = POLL_S,
    stall_s: float = STALL_S,
    deadline_s: float = DEADLINE_S,
    stats_pid: int | None = None,
    on_open: Callable[[], None] | None = None,
) -> Outcome:
    """Replay ``run_id`` into W&B from its cursor; with ``follow``, keep going until the run ends.

    Never raises for W&B's failures: they end up in the returned :class:`Outcome` and in ``mirror_state``.
    ``on_open`` is called on the worker thread once the W&B run is open.
    """
    from expertrack.store import SQLiteStore

    worker = _Worker(Path(store_path), run_id, wandb, follow, poll_s, stats_pid, on_open)
    thread = threading.Thread(target=worker.run, name=f"expertrack-mirror-{run_id}", daemon=True)
    thread.start()
    ended = False
    checked_at = 0.0
    progress: tuple[int | None, float] = (None, time.monotonic())  # (cursor, when it last moved)
    with SQLiteStore(store_path, readonly=True) as watch:
        while not worker.done.wait(0.2):
            now = time.monotonic()
            rep = worker.replayer
            if rep is not None and rep.busy_since is not None and now - rep.busy_since > stall_s:
                return worker.give_up(f"W&B did not answer ({rep.busy_what}) within {stall_s:g} s")
            if rep is not None and rep.cursor != progress[0]:
                progress = (rep.cursor, now)
            if follow and not ended and now - checked_at > poll_s:
                checked_at = now
                if watch.run(run_id).state != "running":
                    ended, progress = True, (progress[0], now)
            if (ended or not follow) and now - progress[1] > deadline_s:
                return worker.give_up(f"no step sent for {deadline_s:g} s after the run ended")
    assert worker.outcome is not None
    return worker.outcome


class _Worker:
    """The thread that calls W&B; the watching thread reads ``replayer`` and may call ``give_up``."""

    def __init__(
        self,
        store_path: Path,
        run_id: str,
        wandb: Any,
        follow: bool,
        poll_s: float,
        stats_pid: int | None,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self.store_path = store_path
        self.run_id = run_id
        self.wandb = wandb
        self.follow = follow
        self.poll_s = poll_s
        self.stats_pid = stats_pid
        self.on_open = on_open
        self.replayer: Replayer | None = None
        self.outcome: Outcome | None = None
        self.done = threading.Event()
        self.cancelled = threading.Event()

    def run(self) -> None:
        from expertrack.store import SQLiteStore

        store = SQLiteStore(self.store_path)
        rep = self.replayer = Replayer(store, self.run_id, self.wandb, live=self.follow, stats_pid=self.stats_pid)
        try:
            rep.open()
            if self.on_open is not None:
                self.on_open()
            while not self.cancelled.is_set():
                final = not self.follow or store.run(self.run_id).state != "running"
                rep.pump(final)
                if final:
                    break
                self.cancelled.wait(self.poll_s)
            if self.cancelled.is_set():
                return
            rep.close()
            self.outcome = Outcome(self.run_id, "complete", rep.cursor, rep.steps_sent, None, rep.remote_id)
        except Exception as exc:  # the mirror's outer boundary: W&B's failure is recorded, never raised
            if self.cancelled.is_set():
                return
            reason = f"{rep.busy_what or 'W&B'} raised {type(exc).__name__}: {exc}"[:500]
            try:
                rep.abandon(reason)
            except Exception:  # finishing a broken W&B run may fail too; the state is already recorded
                pass
            state = "partial" if rep.cursor is not None else "failed"
            self.outcome = Outcome(self.run_id, state, rep.cursor, rep.steps_sent, reason, rep.remote_id)
        finally:
            store.close()
            self.done.set()

    def give_up(self, reason: str) -> Outcome:
        """Called by the watching thread when W&B hangs: record the cursor, let W&B try to keep what it has."""
        from expertrack.store import SQLiteStore

        self.cancelled.set()
        rep = self.replayer
        if rep is not None:
            rep.cancel.set()
        cursor = rep.cursor if rep is not None else None
        remote = rep.remote_id if rep is not None else None
        state = "partial" if cursor is not None else "failed"
        with SQLiteStore(self.store_path) as store:
            write_state(store, self.run_id, state, cursor, remote, reason)
        if rep is not None and rep.wandb_run is not None:
            rescue = threading.Thread(target=_finish_quietly, args=(rep.wandb_run,), daemon=True)
            rescue.start()
            rescue.join(RESCUE_S)
        return Outcome(self.run_id, state, cursor, rep.steps_sent if rep else 0, reason, remote, hung=True)


def _finish_quietly(wandb_run: Any) -> None:
    try:
        wandb_run.finish(exit_code=1)
    except Exception:  # best effort after a hang; nothing more to record
        pass
