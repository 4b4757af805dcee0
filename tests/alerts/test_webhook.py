"""The webhook: a real HTTP server on loopback receives each alert as Slack-compatible JSON; a webhook that fails
or never answers is said once and costs training nothing (every point stored, exit 0, no wait at exit)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import expertrack
from tests.conftest import run_python


class Receiver(ThreadingHTTPServer):
    """Records every POST body; answers ``status``, or never answers when ``hang`` is set."""

    daemon_threads = True

    def __init__(self, status: int = 200, hang: threading.Event | None = None, marker: Path | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = status
        self.hang = hang
        self.marker = marker  # written once a request has arrived: a child process can wait for it
        self.bodies: list[dict[str, Any]] = []
        self.headers_seen: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/T0/B0/secret-part"


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        self.server.headers_seen.append(self.headers["Content-Type"])
        if self.server.marker is not None:
            self.server.marker.write_text("received")
        if self.server.hang is not None:
            self.server.hang.wait(120)  # holds the connection open: the sender's timeout, not ours, must end it
            return
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    """Poll until ``condition()`` holds (the machine may be slow; this is a deadline, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def test_each_alert_is_posted_as_slack_compatible_json(tmp_path: Path, receiver: Receiver, monkeypatch: Any) -> None:
    monkeypatch.setenv("EXPERTRACK_WEBHOOK", receiver.url)
    run = expertrack.init(project="hooks", name="nan-run", dir=tmp_path, mirror="off")
    run.log({"loss": 1.0})
    run.log({"loss": float("nan")})
    run.flush()
    expertrack.alert("eval done", "ppl 12.3")
    wait_for(lambda: len(receiver.bodies) == 2)
    run.finish()
    nan, manual = receiver.bodies
    assert nan["text"] == f"expertrack alert [nan] run nan-run ({run.id}, project hooks): loss is nan at step 1"
    assert (nan["rule"], nan["key"], nan["step"], nan["value"]) == ("nan", "loss", 1, "nan")
    assert nan["run"] == {"id": run.id, "name": "nan-run", "project": "hooks"}
    assert manual["rule"] == "wandb" and manual["message"] == "eval done: ppl 12.3"
    assert receiver.headers_seen == ["application/json", "application/json"]
    stored = expertrack.Api(tmp_path).run(run.id)
    assert "secret-part" not in json.dumps(stored.environment) + json.dumps(stored.config)


def test_a_failing_webhook_is_said_once_and_alerts_are_still_stored(
    tmp_path: Path, receiver: Receiver, monkeypatch: Any, capsys: Any
) -> None:
    receiver.status = 500
    monkeypatch.setenv("EXPERTRACK_WEBHOOK", receiver.url)
    run = expertrack.init(project="hooks", dir=tmp_path, mirror="off")
    for key in ("a", "b", "c"):
        run.log({key: float("inf")})
    run.flush()
    wait_for(lambda: len(receiver.bodies) == 3)
    run.finish()
    err = capsys.readouterr().err
    assert err.count("could not send an alert to the webhook at 127.0.0.1") == 1
    assert "HTTP 500" in err and "secret-part" not in err  # the URL's path is the secret of a Slack webhook
    assert [a.key for a in expertrack.Api(tmp_path).run(run.id).alerts()] == ["a", "b", "c"]


TRAIN_WITH_DEAD_WEBHOOK = """
import os, time
import expertrack
run = expertrack.init(project="hooks", mirror="off")
for step in range(2000):
    run.log({"loss": float("nan") if step % 100 == 50 else 1.0 / (step + 1)})
marker = os.environ.get("RECEIVED_MARKER")
deadline = time.monotonic() + 60
while marker and not os.path.exists(marker) and time.monotonic() < deadline:
    time.sleep(0.02)  # so the test knows a POST is in flight (and held) when finish() is called
run.finish()
print("trained", run.id)
"""


def test_a_webhook_that_never_answers_costs_training_nothing(tmp_path: Path) -> None:
    hang = threading.Event()
    marker = tmp_path / "received"
    server = Receiver(hang=hang, marker=marker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        # The sender's timeout is far longer than this test waits for the child: the child must not wait for it.
        child = run_python(
            TRAIN_WITH_DEAD_WEBHOOK,
            env={
                "EXPERTRACK_WEBHOOK": server.url,
                "EXPERTRACK_ALERTS": _toml(tmp_path, "webhook_timeout = 3600"),
                "RECEIVED_MARKER": str(marker),
            },
            timeout=90,
        )
        assert marker.exists()  # a POST was in flight, held by the server, when the child finished and exited
    finally:
        hang.set()
        server.shutdown()
        server.server_close()
    run_id = child.stdout.split()[-1]
    run = expertrack.Api().run(run_id)
    assert run.state == "finished" and run.point_count("loss") == 2000
    assert [a.step for a in run.alerts()] == list(range(50, 2000, 100))


def test_an_unreachable_webhook_is_said_once_and_training_finishes(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    child = run_python(TRAIN_WITH_DEAD_WEBHOOK, env={"EXPERTRACK_WEBHOOK": f"http://127.0.0.1:{port}/x"})
    assert child.stderr.count("could not send an alert to the webhook") <= 1  # said once at most: it may not
    run = expertrack.Api().run(child.stdout.split()[-1])  # have failed yet when the process ended, by design
    assert run.state == "finished" and run.point_count("loss") == 2000 and len(run.alerts()) == 20


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "alerts.toml"
    path.write_text(text + "\n")
    return str(path)
