"""The replication follower: a process that keeps one run's copy in another store up to date while it trains.

``python -m expertrack.replicate.follower --store PATH --run ID`` (the target location in
``$EXPERTRACK_REPLICATE_TARGET``, never on the command line: a URL may hold a password).

Twice a second (``$EXPERTRACK_REPLICATE_POLL_S``) it copies what is new (``expertrack.store.copy``, reading each
series from where the target's ends; the final copy compares every series whole); the
target being down is said once on stderr, and its coming back once; what it missed is sent then. When the run has
ended it makes a final copy and exits; if the target is down then, it says so, stops writing to the training
process's stderr (its own log goes on in ``<tracking dir>/replicate/<run id>.log``) and retries for
``$EXPERTRACK_REPLICATE_DEADLINE_S`` (default 120) seconds before giving up, naming the ``expertrack push`` that
finishes the copy. Exit status: 0 once the copy is complete, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

POLL_S = 0.5
DEADLINE_S = 120.0


def _seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


class Follower:
    """One run's replication: ``step()`` copies once; ``run()`` loops until the run has ended and is copied."""

    def __init__(self, store_path: Path, run_id: str, location: str) -> None:
        from expertrack.store import SQLiteStore
        from expertrack.store.location import describe

        self.store_path = store_path
        self.run_id = run_id
        self.location = location
        self.shown = describe(location)
        self.source = SQLiteStore(store_path, readonly=True)
        self.target: Any = None
        self.down = False
        self.ended_at: float | None = None  # when the follower first saw the run ended with the target down

    def say(self, message: str) -> None:
        from expertrack.notify import say

        say(message)

    def step(self) -> bool | None:
        """Copy once: True when the run has ended and the copy is complete, False to go on, None on a refusal."""
        from expertrack.store.copy import CopyRefused, copy_run, redact_location

        ended = self.source.run(self.run_id).state != "running"  # read first: the copy then holds all of it
        try:
            if self.target is None:
                from expertrack.store.location import open_store

                self.target = open_store(self.location)
            copy_run(self.source, self.target, self.run_id, tails_only=not ended)
        except CopyRefused as exc:
            self.say(f"not replicating run {self.run_id} to {self.shown}: {exc}")
            return None
        except Exception as exc:  # the target is down, slow or refused us: said once, retried
            self._close_target()
            if not self.down:
                why = " ".join(redact_location(f"{type(exc).__name__}: {exc}", self.location).split())
                self.say(
                    f"replication of run {self.run_id} to {self.shown} failed ({why[:300]}); training goes on, and "
                    "what the copy misses is sent once it is back"
                )
                self.down = True
            return False
        if self.down:
            self.say(f"replication of run {self.run_id} to {self.shown} is back: the copy has caught up")
            self.down = False
        return ended

    def run(self, poll_s: float = POLL_S, deadline_s: float = DEADLINE_S) -> int:
        try:
            while True:
                done = self.step()
                if done is None:
                    return 1
                if done:
                    return 0
                if self.down and self.source.run(self.run_id).state != "running":
                    now = time.monotonic()
                    if self.ended_at is None:
                        self.ended_at = now
                        self.say(
                            f"run {self.run_id} has ended while {self.shown} is down: retrying for "
                            f"{deadline_s:g} s in the background (log: {_log_path(self.store_path, self.run_id)})"
                        )
                        _detach_stderr(self.store_path, self.run_id)
                    elif now - self.ended_at > deadline_s:
                        self.say(
                            f"gave up replicating run {self.run_id} to {self.shown}; "
                            f"`expertrack push {self.run_id} --to LOCATION` will finish the copy"
                        )
                        return 1
                time.sleep(poll_s)
        finally:
            self._close_target()
            self.source.close()

    def _close_target(self) -> None:
        if self.target is not None:
            try:
                self.target.close()
            except Exception:  # a connection already broken: nothing more to close
                pass
            self.target = None


def _log_path(store_path: Path, run_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return store_path.parent / "replicate" / f"{safe}.log"


def _detach_stderr(store_path: Path, run_id: str) -> None:
    """From now on write to the run's replication log instead of the training process's stderr, which may be a
    pipe that someone waits on until every writer has closed it (``python train.py | tee``)."""
    path = _log_path(store_path, run_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(fd, 2)
    os.close(fd)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m expertrack.replicate.follower``."""
    from expertrack.mirror.follower import NICE, _lower_priority
    from expertrack.replicate import ENV_TARGET

    parser = argparse.ArgumentParser(prog="python -m expertrack.replicate.follower", description=__doc__)
    parser.add_argument("--store", required=True, type=Path, help="the local store file (store.db)")
    parser.add_argument("--run", required=True, help="the run id")
    args = parser.parse_args(argv)
    location = os.environ.get(ENV_TARGET, "")
    if not location:
        parser.error(f"${ENV_TARGET} names no target store")
    _lower_priority(int(_seconds("EXPERTRACK_REPLICATE_NICE", NICE)))
    follower = Follower(args.store, args.run, location)
    code = follower.run(
        _seconds("EXPERTRACK_REPLICATE_POLL_S", POLL_S), _seconds("EXPERTRACK_REPLICATE_DEADLINE_S", DEADLINE_S)
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
