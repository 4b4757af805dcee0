"""``wandb.alert(title, text, level, wait_duration)`` and ``run.alert(...)``: an alert raised by the program itself.

It becomes an alert like those the rules raise (rule ``wandb``): stored with the run, printed once to stderr, sent
to the webhook. As in wandb, ``wait_duration`` (seconds or a ``timedelta``) drops a later alert of the same title
raised within that time of the last one sent.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

RULE = "wandb"


class ManualAlerts:
    """Remembers when each title was last raised, for ``wait_duration``."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def raise_alert(self, engine: Any, step: int | None, title: str, text: str, level: Any, wait_duration: Any) -> bool:
        """Raise one alert through ``engine`` (an ``AlertEngine``); False when ``wait_duration`` held it back."""
        wait = _seconds(wait_duration)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(title)
            if wait and last is not None and now - last < wait:
                return False
            self._last[title] = now
        shown = getattr(level, "name", None) or (str(level) if level is not None else "")
        message = (f"[{shown}] " if shown else "") + str(title) + (f": {text}" if text else "")
        engine.raise_alert(RULE, None, step, None, message)
        return True


def _seconds(wait_duration: Any) -> float:
    if wait_duration is None:
        return 0.0
    if isinstance(wait_duration, timedelta):
        return wait_duration.total_seconds()
    return float(wait_duration)
