"""Messages to the user on stderr, each said once: tracking problems are reported, never raised into training.

``Notifier`` is the one "say once" mechanism: a run has its own (its writer, parser and integrations report
through it); the W&B mirror's start keeps one for the whole process.
"""

from __future__ import annotations

import sys
import threading

PREFIX = "expertrack: "


class Notifier:
    """Prints each distinct message once (per notifier) and counts how often it was suppressed."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def once(self, topic: str, message: str) -> bool:
        """Print ``message`` the first time ``topic`` is seen; return whether it was printed."""
        with self._lock:
            count = self._seen.get(topic, 0)
            self._seen[topic] = count + 1
        if count:
            return False
        say(message)
        return True

    def clear(self) -> None:
        """Forget what was said: each message is said once more."""
        with self._lock:
            self._seen.clear()

    def count(self, topic: str) -> int:
        """How many times ``topic`` was reported (printed or not)."""
        return self._seen.get(topic, 0)


def say(message: str) -> None:
    """Write one line to stderr with the expertrack prefix; never raises (stderr may be closed)."""
    try:
        sys.stderr.write(PREFIX + message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
