"""POSTing alerts to a webhook (``$EXPERTRACK_WEBHOOK``) as JSON, on a thread of its own.

The body is Slack-compatible (its ``text`` field is the whole message; Slack, Mattermost, Discord's ``/slack``
endpoints and most chat bridges show it as is) and carries the alert's fields for anything else. Each POST has a
timeout; nothing ever waits for it: not ``log()``, not the writer, not ``finish()`` (DESIGN.md rule 1), so an
alert raised in a process's last moments may not be delivered, while it is always stored and printed. A webhook
that fails is said once, without its URL (a Slack webhook's URL is its secret): only its host is named.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from expertrack.notify import Notifier
from expertrack.store.alerts import AlertRecord

MAX_QUEUED = 1000  # alerts waiting to be sent; past it new ones are dropped (and said), never blocking the writer


class WebhookSender:
    """Sends each alert given to ``send`` as one POST, in order, from a daemon thread started on first use."""

    def __init__(self, url: str, timeout: float, notifier: Notifier) -> None:
        self.url = url
        self.timeout = timeout
        self.notifier = notifier
        self.host = urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or "?"
        self._queue: queue.Queue[bytes | None] = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def send(self, alert: AlertRecord, run: Any) -> None:
        """Queue one alert; returns at once."""
        with self._start_lock:  # the writer and the training thread (wandb.alert) may both send
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="expertrack-webhook", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(payload(alert, run))
        except queue.Full:
            self.notifier.once("webhook-full", f"alert webhook at {self.host} is not keeping up; alerts dropped")

    def close(self) -> None:
        """Let the thread end after what is queued; not waited for."""
        if self._thread is not None:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                pass

    def _loop(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            try:
                self._post(body)
                self.sent += 1
            except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, a malformed URL
                self.failed += 1
                self.notifier.once(
                    "webhook-failed",
                    f"could not send an alert to the webhook at {self.host} ({_reason(exc)}); alerts are still "
                    "stored with the run and printed here (further failures are not said)",
                )

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()


def payload(alert: AlertRecord, run: Any) -> bytes:
    """The JSON body: ``text`` for Slack-like receivers, then the alert's fields and the run's identity."""
    value = alert.value if alert.value is None or math.isfinite(alert.value) else str(alert.value)
    body = {
        "text": f"expertrack alert [{alert.rule}] run {run.name} ({run.id}, project {run.project}): {alert.message}",
        "rule": alert.rule,
        "key": alert.key,
        "step": alert.step,
        "value": value,  # NaN and +-inf are not JSON numbers: sent as the strings "nan", "inf", "-inf"
        "time": alert.time,
        "message": alert.message,
        "run": {"id": run.id, "name": run.name, "project": run.project},
    }
    return json.dumps(body).encode()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"
