"""Many logging processes, each sent a real signal at a random moment; prints what happened as JSON lines.

Run as a script by tests/e2e/test_write_path.py. The driver imports expertrack once and forks each logger, so a
hundred of them cost a fork each rather than an interpreter start (the driver itself starts no run and no thread
before forking). Each logger starts a run, says it is ready, then logs ``step_copy`` (its step) and ``loss`` in a
loop, as fast as it can or with a sleep per step, until the signal ends it.

    python forked_loggers.py COUNT CONCURRENCY SIGNAL STEP_SLEEP_S MIN_DELAY_S MAX_DELAY_S SEED

One JSON object per logger on stdout: run id, when it was ready and when the signal was sent (time.time()), how it
ended (``signal`` number or ``exit`` code, or ``hung`` when it outlived the finish deadline) and how long it took.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

import expertrack
from expertrack.run import FINISH_DEADLINE_S


def logger(index: int, step_sleep: float, ready_fd: int) -> None:
    """The child: a run logging in a loop until a signal ends the process."""
    run = expertrack.init(project="signals", name=f"logger-{index}")
    os.write(ready_fd, f"{run.id}\n".encode())
    os.close(ready_fd)
    step = 0
    while True:
        run.log({"step_copy": float(step), "loss": 1.0 / (step + 1)})
        step += 1
        if step_sleep:
            time.sleep(step_sleep)


def spawn(index: int, step_sleep: float) -> tuple[int, str, float]:
    """Fork a logger; its pid, run id and when it said it was ready."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            logger(index, step_sleep, write_fd)
        finally:
            os._exit(99)  # only reached if the loop ever ends: it must not
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        run_id = ready.readline().strip()
    return pid, run_id, time.time()


def reaped(pid: int) -> dict[str, object] | None:
    """How the process ended, or None while it runs."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if not done:
        return None
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status)}


def run_batch(batch: list[tuple[int, str, float]], signum: int, delays: list[float]) -> None:
    """Signal each logger of the batch at its moment and reap them as they end, all in one polling loop (so how
    long each took is measured from its own signal to its own end); print a JSON line per logger."""
    due = sorted((ready + delay, pid) for (pid, _run_id, ready), delay in zip(batch, delays))
    info = {pid: (run_id, ready) for pid, run_id, ready in batch}
    sent: dict[int, float] = {}
    while info:
        now = time.time()
        while due and due[0][0] <= now:
            pid = due.pop(0)[1]
            sent[pid] = time.time()
            os.kill(pid, signum)
        for pid in [p for p in info if p in sent]:
            outcome = reaped(pid)
            if outcome is None and time.time() > sent[pid] + FINISH_DEADLINE_S:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                outcome = {"hung": True}
            if outcome is not None:
                run_id, ready = info.pop(pid)
                took = time.time() - sent[pid]
                print(json.dumps({"run_id": run_id, "ready": ready, "sent": sent[pid], "took": took, **outcome}))
                sys.stdout.flush()
        time.sleep(0.002)


def main(argv: list[str]) -> None:
    """Run the loggers in batches of CONCURRENCY; print one JSON line per logger."""
    count, concurrency = int(argv[0]), int(argv[1])
    signum = int(getattr(signal, argv[2]))
    step_sleep, min_delay, max_delay = float(argv[3]), float(argv[4]), float(argv[5])
    rng = random.Random(int(argv[6]))
    done = 0
    while done < count:
        batch = [spawn(done + i, step_sleep) for i in range(min(concurrency, count - done))]
        run_batch(batch, signum, [rng.uniform(min_delay, max_delay) for _ in batch])
        done += len(batch)


if __name__ == "__main__":
    main(sys.argv[1:])
