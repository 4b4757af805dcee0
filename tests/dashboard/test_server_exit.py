"""`expertrack ui` exits promptly on SIGTERM, even while a request is reading a huge array."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np

import expertrack
from tests.dashboard.processes import Server


def _store_open(pid: int, store: Path) -> bool:
    """Whether process ``pid`` has the store file open (each dashboard request opens it while it answers)."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == str(store):
                return True
        except OSError:
            continue
    return False


def test_sigterm_during_a_huge_array_request_exits_without_waiting_for_it(tmp_path: Path) -> None:
    directory = tmp_path / "runs"
    with expertrack.init(project="p", dir=directory, mirror="off") as run:
        for step in range(3):  # 3 x 2,000,000 float64: answering as JSON columns takes many seconds
            run.log({"loss": 1.0 / (step + 1), "moe/big": np.full(2_000_000, float(step))})
    server = Server(directory)
    outcome: dict[str, object] = {}

    def ask() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        try:
            connection.request("GET", f"/api/runs/{run.id}/array_series?key=moe/big")
            outcome["status"] = connection.getresponse().read() and "answered"
        except (OSError, http.client.HTTPException) as exc:
            outcome["status"] = f"cut off: {type(exc).__name__}"

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    deadline = time.monotonic() + 60
    while not _store_open(server.proc.pid, directory / "store.db"):  # the request is being answered
        assert time.monotonic() < deadline and asking.is_alive(), outcome
        time.sleep(0.01)
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=120)  # a guard against a hang, not a measurement
    asking.join(timeout=60)
    assert code in (128 + signal.SIGTERM, -signal.SIGTERM)
    assert str(outcome.get("status", "")).startswith("cut off"), outcome  # it did not wait for the answer
    server.stop()


def test_sigterm_when_idle_exits_as_terminated(tmp_path: Path) -> None:
    directory = tmp_path / "runs"
    with expertrack.init(project="p", dir=directory, mirror="off") as run:
        run.log({"loss": 1.0})
    server = Server(directory)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) in (128 + signal.SIGTERM, -signal.SIGTERM)
    server.stop()
    assert "serving" in server.output
