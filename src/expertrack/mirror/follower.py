"""The live mirror: a process that follows one run in the store and sends it to W&B as it grows.

``python -m expertrack.mirror.follower --store PATH --run ID [--parent-pid PID]``

``expertrack.mirror.start()`` launches it next to the training process, so wandb's work (and its interpreter
lock) never touches training. It polls the store for points after its cursor about once a second, exits once
the run has ended and everything is sent, and gives up (recording its cursor and why) when W&B raises or stops
answering. Its output goes to ``<tracking dir>/mirror/<run id>.log``. Deadlines can be tuned with
``EXPERTRACK_MIRROR_STALL_S`` (one W&B call) and ``EXPERTRACK_MIRROR_DEADLINE_S`` (no progress after the end);
it runs at a lower priority (``EXPERTRACK_MIRROR_NICE``, default 10).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from expertrack.mirror import guard
from expertrack.mirror.locks import RunLock
from expertrack.mirror.state import write_state

NICE = 10  # the mirror (and wandb's service process, its child) yields the CPU to training


def _lower_priority(increment: int) -> None:
    """Run below training's priority, so on a busy machine the scheduler runs training first.

    The mirror has a session of its own (see ``mirror.launch``); on Linux that makes it a scheduler autogroup,
    whose weight is set through ``/proc/self/autogroup``: a plain ``nice`` only ranks tasks within a group.
    It also ignores Ctrl-C and hang-ups, which it may still get when started by hand from a terminal.
    """
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    try:
        os.nice(increment)
    except (OSError, AttributeError):  # not permitted, or no nice() on this platform: run as is
        pass
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(increment))
    except OSError:  # not Linux, or autogroups compiled out
        pass


def _lower_children(increment: int) -> None:
    """Lower the scheduler weight of wandb's service process too (Linux autogroups).

    wandb starts its service (wandb-core) in a session of its own, and on Linux each session is a scheduler
    autogroup that competes with training's as an equal, whatever its nice value. Writing to
    ``/proc/PID/autogroup`` (allowed for our own processes when lowering priority) fixes that.
    """
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid, parent, session = int(stat.parent.name), int(fields[1]), int(fields[3])
            if parent == me and session == pid:
                (stat.parent / "autogroup").write_text(str(increment))
        except (OSError, IndexError, ValueError):
            continue


def _seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def follow(store_path: Path, run_id: str, parent_pid: int | None = None) -> guard.Outcome | None:
    """Mirror one run live; None when another mirror already holds the run."""
    lock = RunLock(store_path, run_id)
    if not lock.acquire():
        print(f"another mirror process holds run {run_id}; leaving it to that one", file=sys.stderr)
        return None
    try:
        try:
            import wandb
        except Exception as exc:  # a broken wandb install must not look like a hang
            from expertrack.store import SQLiteStore

            with SQLiteStore(store_path) as store:
                write_state(store, run_id, "failed", None, None, f"wandb could not be imported: {exc}")
            return guard.Outcome(run_id, "failed", None, 0, f"wandb could not be imported: {exc}")
        nice = int(_seconds("EXPERTRACK_MIRROR_NICE", NICE))
        return guard.mirror_run(
            store_path,
            run_id,
            wandb,
            follow=True,
            poll_s=_seconds("EXPERTRACK_MIRROR_POLL_S", guard.POLL_S),
            stall_s=_seconds("EXPERTRACK_MIRROR_STALL_S", guard.STALL_S),
            deadline_s=_seconds("EXPERTRACK_MIRROR_DEADLINE_S", guard.DEADLINE_S),
            stats_pid=parent_pid,
            on_open=lambda: _lower_children(nice),
        )
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m expertrack.mirror.follower``."""
    parser = argparse.ArgumentParser(prog="python -m expertrack.mirror.follower", description=__doc__)
    parser.add_argument("--store", required=True, type=Path, help="the store file (store.db)")
    parser.add_argument("--run", required=True, help="the run id")
    parser.add_argument("--parent-pid", type=int, default=None, help="the training process (for W&B's stats)")
    args = parser.parse_args(argv)
    _lower_priority(int(_seconds("EXPERTRACK_MIRROR_NICE", NICE)))
    outcome = follow(args.store, args.run, args.parent_pid)
    if outcome is not None:
        line = f"{outcome.state}: {outcome.steps_sent} steps sent, cursor {outcome.cursor}"
        print(line + (f" ({outcome.reason})" if outcome.reason else ""), file=sys.stderr, flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if outcome is not None and outcome.hung:
        os._exit(2)  # W&B is stuck in a thread: skip its exit hooks, which would wait on it forever
    sys.exit(0 if outcome is None or outcome.state == "complete" else 1)


if __name__ == "__main__":
    main()
