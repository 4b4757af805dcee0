"""The alert engine: runs the rules on the writer's thread, never in ``log()`` (DESIGN.md rule 1).

The writer hands it each key's newly absorbed points (``scalars``) and arrays (``array``) and calls ``tick`` once
per cycle (every half second): that is where a stalled run is noticed, since the writer keeps cycling while the
training loop is stuck. Raised alerts are printed once to stderr, queued for the webhook (its own thread), and
kept until the writer takes them (``take``) to store them in its next transaction, so they are retried with the
points if a write fails. A bug in a rule is reported once and costs no point: the engine is a boundary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from expertrack.alerts.config import AlertSettings
from expertrack.alerts.rules import DeadExpertRule, Firing, NanRule, RunLengthRule, SpikeRule
from expertrack.notify import Notifier, say
from expertrack.store.alerts import AlertRecord


@dataclass(frozen=True)
class RunIdentity:
    """What an alert says about its run (on stderr and in the webhook's message)."""

    id: str
    name: str
    project: str


class AlertEngine:
    """Evaluates one run's alert rules. ``scalars``/``array``/``tick`` are called by the writer thread only;
    ``raise_alert`` (``wandb.alert``) may be called from any thread."""

    def __init__(
        self,
        settings: AlertSettings,
        run: RunIdentity,
        notifier: Notifier,
        clock: Callable[[], float] = time.time,
        quiet: bool = False,
    ) -> None:
        self.settings = settings
        self.run = run
        self.notifier = notifier
        self._clock = clock
        self._quiet = quiet  # replaying stored runs: collect, print nothing
        self._scalar_rules, self._array_rules = _build(settings)
        self._per_key: dict[str, tuple[Any, ...]] = {}
        self._per_array: dict[str, tuple[Any, ...]] = {}
        self._pending: list[AlertRecord] = []
        self._lock = threading.Lock()
        rules = settings.rules
        self._stall_s = rules["stall"]["minutes"] * 60.0 if settings.enabled("stall") else None
        self._last_step: int | None = None
        self._progress_at = clock()  # a run that never logs a step has stalled since it started
        self._stalled = False
        self._webhook: Any = None
        if settings.webhook:
            from expertrack.alerts.webhook import WebhookSender

            self._webhook = WebhookSender(settings.webhook, settings.webhook_timeout, notifier)

    # ---- fed by the writer -------------------------------------------------------------------------------------

    def scalars(self, key: str, steps: Sequence[int], values: Any) -> None:
        """New points of one scalar key (``values`` a float64 NumPy array, ``steps`` the same length)."""
        rules = self._per_key.get(key)
        if rules is None:
            rules = self._per_key[key] = tuple(r for r in self._scalar_rules if r.wants(key))
        self._progress(steps[-1])
        for rule in rules:
            try:
                firings = rule.check(key, steps, values)
            except Exception as exc:  # boundary: a rule's bug must not cost the points it was shown
                self._broken(rule.name, exc)
                continue
            for firing in firings:
                self._raise(firing)

    def array(self, key: str, step: int, value: Any) -> None:
        """A new array point (e.g. ``moe/tokens_per_expert`` [L, E])."""
        rules = self._per_array.get(key)
        if rules is None:
            rules = self._per_array[key] = tuple(r for r in self._array_rules if r.wants(key))
        self._progress(step)
        for rule in rules:
            try:
                firings = rule.check_array(key, step, value)
            except Exception as exc:  # boundary, as above
                self._broken(rule.name, exc)
                continue
            for firing in firings:
                self._raise(firing)

    def tick(self) -> None:
        """Once per writer cycle: raise a stall when no new step came for the configured time."""
        if self._stall_s is None or self._stalled:
            return
        now = self._clock()
        idle = now - self._progress_at
        if idle < self._stall_s:
            return
        self._stalled = True
        since = "since the run started" if self._last_step is None else f"after step {self._last_step}"
        self._raise(
            Firing(
                "stall",
                None,
                self._last_step,
                idle / 60.0,
                f"no new step for {_duration(idle)} {since}, while the process is still running",
            )
        )

    def take(self) -> list[AlertRecord]:
        """The alerts raised since the last call, for the writer to store."""
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    # ---- raised by hand --------------------------------------------------------------------------------------

    def raise_alert(self, rule: str, key: str | None, step: int | None, value: float | None, message: str) -> None:
        """Raise an alert from outside the rules (``wandb.alert``): stored, printed and sent like the others."""
        self._raise(Firing(rule, key, step, value, message))

    def close(self) -> None:
        """Stop the webhook's thread from taking new work; posts in flight are not waited for (rule 1)."""
        if self._webhook is not None:
            self._webhook.close()

    # ---- plumbing --------------------------------------------------------------------------------------------

    def _progress(self, step: int) -> None:
        if self._last_step is None or step > self._last_step:
            self._last_step = int(step)
            self._progress_at = self._clock()
            self._stalled = False  # a new step ends a stall's episode

    def _raise(self, firing: Firing) -> None:
        record = AlertRecord(firing.rule, firing.key, firing.step, firing.value, self._clock(), firing.message)
        with self._lock:
            self._pending.append(record)
        if not self._quiet:
            say(f"alert [{record.rule}] run {self.run.name} ({self.run.id}): {record.message}")
        if self._webhook is not None:
            self._webhook.send(record, self.run)

    def _broken(self, rule: str, exc: Exception) -> None:
        self.notifier.once(
            f"alert-rule:{rule}",
            f"alert rule {rule!r} failed ({type(exc).__name__}: {exc}); the rule is skipped, nothing logged is lost",
        )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} minutes"


def _build(settings: AlertSettings) -> tuple[list[Any], list[Any]]:
    """The scalar rules and the array rules that are enabled."""
    rules = settings.rules
    scalar: list[Any] = []
    if settings.enabled("nan"):
        scalar.append(NanRule(rules["nan"]["keys"]))
    if settings.enabled("spike"):
        spike = rules["spike"]
        scalar.append(SpikeRule(spike["keys"], spike["factor"], spike["window"], spike["patience"]))
    if settings.enabled("maxvio"):
        maxvio = rules["maxvio"]
        scalar.append(RunLengthRule("maxvio", maxvio["key"], maxvio["logs"], above=maxvio["threshold"]))
    if settings.enabled("entropy"):
        ent = rules["entropy"]
        scalar.append(
            RunLengthRule(
                "entropy", ent["key"], ent["logs"], fraction=ent["fraction"], baseline_logs=ent["baseline_logs"]
            )
        )
    arrays: list[Any] = []
    if settings.enabled("dead_expert"):
        arrays.append(DeadExpertRule(rules["dead_expert"]["key"], rules["dead_expert"]["logs"]))
    return scalar, arrays
