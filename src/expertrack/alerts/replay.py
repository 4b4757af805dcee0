"""Replaying the rules over a stored run: what they would raise with given settings, without storing anything.

For tuning thresholds on runs you already have (``expertrack alerts RUN --replay --alert maxvio:threshold=2``),
and for checking that settings raise nothing on healthy runs. Rules are independent per key, so each scalar series
is fed whole (one NumPy batch) and each array point in step order; the stall rule needs a live process and is not
replayed. Alerts come out in step order; those of scalar rules carry the time their point was logged at (those of
array rules, the replay's time).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from expertrack.alerts.config import AlertSettings
from expertrack.alerts.engine import AlertEngine, RunIdentity
from expertrack.notify import Notifier
from expertrack.store.alerts import AlertRecord


def replay(run: Any, settings: AlertSettings) -> list[AlertRecord]:
    """The alerts ``settings`` would raise on ``run`` (an ``ApiRun``), in step order; prints nothing."""
    settings = dataclasses.replace(settings, webhook=None, rules={k: dict(v) for k, v in settings.rules.items()})
    settings.rules["stall"]["enabled"] = False
    engine = AlertEngine(settings, RunIdentity(run.id, run.name, run.project), Notifier(), quiet=True)
    times: dict[tuple[str, int], float] = {}
    for key in run.metric_keys():
        steps, stamps, values = run.scalars(key)
        if len(values):
            engine.scalars(key, steps.tolist(), values)
            times.update({(key, int(s)): float(t) for s, t in zip(steps, stamps)})
    for key in run.array_keys():
        steps, arrays = run.arrays(key)
        for step, array in zip(steps.tolist(), arrays):
            engine.array(key, step, array)
    raised = [
        dataclasses.replace(a, time=times.get((a.key or "", a.step if a.step is not None else -1), a.time))
        for a in engine.take()
    ]
    return sorted(raised, key=lambda a: (a.step if a.step is not None else -1, a.rule, a.key or ""))
