"""Replay one stored run into W&B, from its mirror cursor on: the code path of the live mirror and of ``sync``.

A :class:`Replayer` opens (or resumes) the W&B run with the same id, sends every step after the cursor as one
``wandb.log(row, step=s)`` call (all the step's scalars and arrays, in ascending steps, with the original wall
time as ``_timestamp``), records the cursor in ``mirror_state`` after each call returns, and at the end sets the summary
and finishes the W&B run. It only ever calls W&B from the thread that drives it; ``busy_since`` tells a
watchdog (``mirror.guard``) how long the current W&B call has been running, so a hang can be detected from
outside.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expertrack.mirror import arrays
from expertrack.mirror.state import (
    LIVE_REASON,
    SYNC_REASON,
    MirrorState,
    advance_cursor,
    read_state,
    write_state,
)

WINDOW_STEPS = 4096  # rows built at a time
_WANDB_FORBIDDEN = re.compile(r"[/\\#?%:]")  # characters W&B refuses in project names and run ids


def wandb_name(text: str, limit: int = 128) -> str:
    """``text`` with the characters W&B refuses in project names and run ids replaced by ``-``."""
    return _WANDB_FORBIDDEN.sub("-", text)[:limit] or "-"


class Replayer:
    """Sends one stored run to W&B. Use ``open()``, then ``pump()`` as often as wanted, then ``close()``."""

    def __init__(
        self, store: Any, run_id: str, wandb: Any, *, live: bool = False, stats_pid: int | None = None
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.wandb = wandb
        self.live = live
        self.stats_pid = stats_pid
        self.cursor: int | None = None  # last step handed to W&B (None: nothing yet)
        self.remote_id: str | None = None
        self.wandb_run: Any = None
        self.steps_sent = 0
        self.busy_since: float | None = None  # monotonic time the current W&B call began; None when idle
        self.busy_what = ""
        self.cancel = threading.Event()  # set by a watchdog that gave up: send and record nothing more
        self._sent_config = ""
        self._sent_defs: set[str] = set()

    # ---- W&B calls, timed for the watchdog ---------------------------------------------------------------------

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.busy_what = what
        self.busy_since = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.busy_since = None

    # ---- the three phases ---------------------------------------------------------------------------------------

    def open(self) -> None:
        """Start or resume the W&B run (same id, project, name, group, tags, notes, config, metric settings)."""
        record = self.store.run(self.run_id)
        previous = read_state(self.store, self.run_id)
        if previous is not None:
            self.cursor = previous.cursor_step
        self._sent_config = json.dumps(record.config, sort_keys=True, default=str)
        self.wandb_run = self._call(
            "wandb.init",
            self.wandb.init,
            id=wandb_name(record.id, 64),
            project=wandb_name(record.project),
            name=record.name,
            group=record.group or None,
            tags=[t[:64] for t in record.tags] or None,
            notes=record.notes or None,
            config=record.config,
            resume="allow",
            settings=self._settings(),
        )
        self.remote_id = _remote_id(self.wandb_run)
        held = _last_step_wandb_holds(self.wandb_run, self.remote_id, previous)
        if held is not _UNKNOWN:
            self.cursor = held  # type: ignore[assignment]
        self._sync_defs(record.metric_defs)
        write_state(
            self.store, self.run_id, "partial", self.cursor, self.remote_id, LIVE_REASON if self.live else SYNC_REASON
        )

    def pump(self, final: bool) -> int:
        """Send the steps stored after the cursor; while the run is live, hold back its newest step.

        Returns the number of steps sent. The newest step is held back because rows of the step being logged
        may still be arriving (W&B accepts no row below a step it has seen).
        """
        record = self.store.run(self.run_id)
        self._sync_config(record.config)
        self._sync_defs(record.metric_defs)  # a live run may define metrics after the mirror opened it
        last = self.store.last_step(self.run_id)
        if last is None:
            return 0
        upto = last if final else last - 1
        if self.cursor is not None and upto <= self.cursor:
            return 0
        sent = 0
        for step, row in self._rows(upto):
            if self.cancel.is_set():
                return sent
            self._call("wandb.log", self.wandb_run.log, row, step=step)
            self.cursor = step
            sent += 1
            self.steps_sent += 1
            if not self.cancel.is_set():  # saved at once: a position that lags W&B means resending (issue 12)
                advance_cursor(self.store, self.run_id, step)
        self._save("partial")
        return sent

    def close(self, exit_code: int | None = None) -> None:
        """Set the W&B summary to the stored one, finish the W&B run, and record the mirror as complete."""
        record = self.store.run(self.run_id)
        summary = {k: v for k, v in record.summary.items() if not k.startswith("_")}
        if summary:
            self._call("summary.update", self.wandb_run.summary.update, summary)
        code = exit_code if exit_code is not None else (record.exit_code or (1 if record.state == "crashed" else 0))
        self._call("wandb.finish", self.wandb_run.finish, exit_code=code)
        self.wandb_run = None
        self._save("complete", reason=None)

    def abandon(self, reason: str, finish: bool = True) -> None:
        """Record how far the mirror got and why it stopped; then (best effort) finish the W&B run as failed."""
        self._save("partial" if self.cursor is not None else "failed", reason=reason)
        if finish and self.wandb_run is not None:
            run, self.wandb_run = self.wandb_run, None
            self._call("wandb.finish", run.finish, exit_code=1)

    # ---- helpers --------------------------------------------------------------------------------------------------

    def _save(self, state: str, reason: str | None = "") -> None:
        if self.cancel.is_set():
            return
        if reason == "":
            reason = LIVE_REASON if self.live else SYNC_REASON
        write_state(self.store, self.run_id, state, self.cursor, self.remote_id, reason)

    def _settings(self) -> Any:
        # The mirror is not the training process: no console capture, code, git or machine facts of its own.
        # A live mirror points W&B's system charts at the training process instead (x_stats_pid).
        options: dict[str, Any] = dict(
            silent=True, console="off", save_code=False, disable_git=True, disable_code=True, x_disable_meta=True
        )
        if self.live and self.stats_pid:
            options["x_stats_pid"] = self.stats_pid
        else:
            options["x_disable_stats"] = True
        try:
            return self.wandb.Settings(**options)
        except Exception:  # an older or newer wandb without one of these fields: use its defaults
            return None

    def _sync_defs(self, definitions: list[dict[str, Any]]) -> None:
        """Send each ``define_metric`` setting once, in the order the run made them."""
        for definition in definitions:
            text = json.dumps(definition, sort_keys=True, default=str)
            if text not in self._sent_defs:
                self._define_metric(definition)
                self._sent_defs.add(text)

    def _define_metric(self, definition: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {}
        if definition.get("step_metric"):
            # step_sync=False: W&B would otherwise copy the step metric into rows that never logged it.
            kwargs.update(step_metric=definition["step_metric"], step_sync=False)
        if definition.get("summary"):
            kwargs["summary"] = definition["summary"]
        if definition.get("hidden"):
            kwargs["hidden"] = True
        self._call("define_metric", self.wandb_run.define_metric, definition["name"], **kwargs)

    def _sync_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, sort_keys=True, default=str)
        if text != self._sent_config:
            self._call("config.update", self.wandb_run.config.update, config, allow_val_change=True)
            self._sent_config = text

    def _rows(self, upto: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every step in (cursor, upto] with its merged row, ascending; ``_timestamp`` is the step's first time.

        Points are read as NumPy arrays; rows (and heatmap images) are built ``WINDOW_STEPS`` steps at a time,
        so replaying a long run does not hold millions of Python dicts.
        """
        import numpy as np

        after = self.cursor if self.cursor is not None else -1
        series = []
        for key in self.store.scalar_keys(self.run_id):
            steps, stamps, values = self.store.read_scalars(self.run_id, key, after_step=self.cursor)
            keep = (steps > after) & (steps <= upto)
            steps, stamps, values = steps[keep], stamps[keep], values[keep]
            if steps.size > 1 and np.any(np.diff(steps) < 0):
                order = np.argsort(steps, kind="stable")
                steps, stamps, values = steps[order], stamps[order], values[order]
            series.append((key, steps, stamps, values))
        points = [
            (s, t, key, value)
            for key in self.store.array_keys(self.run_id)
            for s, t, value in self.store.read_arrays(self.run_id, key, after_step=self.cursor)
            if after < s <= upto
        ]
        points.sort(key=lambda p: p[0])
        every = np.unique(np.concatenate([np.asarray([p[0] for p in points], np.int64)] + [x[1] for x in series]))
        next_point = 0
        for start in range(0, every.size, WINDOW_STEPS):
            lo, hi = int(every[start]), int(every[min(start + WINDOW_STEPS, every.size) - 1])
            rows: dict[int, dict[str, Any]] = {}
            times: dict[int, float] = {}
            for key, steps, stamps, values in series:
                a, b = np.searchsorted(steps, lo, "left"), np.searchsorted(steps, hi, "right")
                for s, t, v in zip(steps[a:b].tolist(), stamps[a:b].tolist(), values[a:b].tolist()):
                    rows.setdefault(s, {})[key] = v
                    times[s] = min(t, times.get(s, math.inf))
            while next_point < len(points) and points[next_point][0] <= hi:
                s, t, key, value = points[next_point]
                rows.setdefault(s, {}).update(arrays.to_wandb(key, value, self.wandb))
                times[s] = min(t, times.get(s, math.inf))
                next_point += 1
            for s in sorted(rows):
                rows[s]["_timestamp"] = times[s]
                yield s, rows[s]


_UNKNOWN = object()


def _last_step_wandb_holds(wandb_run: Any, remote_id: str | None, previous: MirrorState | None) -> object:
    """The last step W&B itself holds of a run being resumed, or ``_UNKNOWN``: W&B's account beats our saved
    cursor, which a killed mirror leaves either behind it (steps sent twice) or ahead of it (``wandb.log`` had
    returned, but a killed process's buffered records never reached W&B: steps lost).

    Offline, what W&B holds is in the previous offline run directory's .wandb log (our reader reads it, a cut-off
    last record left out); online, a resumed run's ``step`` is the step after the last one W&B recorded.
    """
    if previous is None or previous.cursor_step is None:
        return _UNKNOWN
    offline = "offline: "
    if remote_id and remote_id.startswith(offline):
        if not (previous.remote_id or "").startswith(offline):
            return _UNKNOWN  # the cursor counts steps sent online: nothing of that is in an offline log
        from expertrack.mirror.wandb_log import read_run

        logs = sorted(Path(previous.remote_id[len(offline) :]).glob("*.wandb"))  # type: ignore[index]
        steps = [row["_step"] for log in logs for row in read_run(log).history if "_step" in row]
        return max(steps) if steps else _UNKNOWN
    step = getattr(wandb_run, "step", None)
    if getattr(wandb_run, "resumed", False) and type(step) is int and step > 0:
        return step - 1
    return _UNKNOWN


def _remote_id(wandb_run: Any) -> str | None:
    """Where the W&B copy is: ``entity/project/id`` online, the offline run directory when offline."""
    try:
        if getattr(wandb_run, "offline", False) or getattr(wandb_run.settings, "_offline", False):
            return f"offline: {wandb_run.settings.sync_dir}"
        return str(wandb_run.path)
    except Exception:  # the id is informative only; a W&B without these attributes still mirrors
        return None
