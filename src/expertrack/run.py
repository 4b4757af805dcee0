"""``Run``: step bookkeeping, config, summary and define_metric, turning calls into records for the writer.

Step semantics follow wandb's ``log``: without ``step`` each call commits a row and advances the step; with
``step`` the row is kept open (``commit`` defaults to False) until a later step or a commit; ``commit=False``
merges into the current row. A step lower than the current one is refused with a warning that names the key and
both steps (once per run), never dropped silently.
"""

from __future__ import annotations

import operator
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expertrack.alerts.manual import ManualAlerts
from expertrack.config import Config, dumps
from expertrack.notify import Notifier, say
from expertrack.records import ConfigSet, End, FileChunk, MetricDefs, Record, Row, SummaryDeleted, SummarySet
from expertrack.runcalls import WandbRunCalls
from expertrack.summary import Summary, SummaryState, parse_summary_spec
from expertrack.values import flatten
from expertrack.writer import Writer

FINISH_DEADLINE_S = 30.0
KILLED_LOG_PAUSE_S = 0.05


class Run(WandbRunCalls):
    """One tracked run. Create it with ``expertrack.init()``; use it as a context manager or call ``finish()``."""

    def __init__(
        self,
        *,
        id: str,
        name: str,
        project: str,
        group: str | None,
        tags: list[str],
        notes: str | None,
        dir: Path,
        config: Mapping[str, Any],
        writer: Writer | None,
        notifier: Notifier,
        start_step: int = 0,
        resumed: bool = False,
    ) -> None:
        self.id = id
        self.name = name
        self.project = project
        self.group = group
        self.tags = tags
        self.notes = notes
        self.dir = dir
        self.resumed = resumed  # wandb's run.resumed: True when init() continued a stored run
        self.notifier = notifier
        self._writer = writer  # None: a disabled run (mode="disabled"), which accepts calls and stores nothing
        # a disabled run's summary is a plain dict of the values set on it (wandb's disabled summary reads back)
        self._summary_state = writer.summary if writer is not None else SummaryState()
        self._queue = writer.queue if writer is not None else None
        self._lock = threading.Lock()
        self._step = start_step
        self._pending: dict[str, Any] = {}
        self._defs: list[dict[str, Any]] = []
        self._finished = False
        self.config = Config(config, self._config_changed)
        self.summary = Summary(self._summary_snapshot, self._summary_set, self._summary_delete)
        self._on_finish: list[Any] = []
        self._after_end: list[Any] = []  # called once the store has the run's end (expertrack.snapshots)
        self._ended = threading.Event()  # set when finish() has returned: a second finish() waits for the first
        self._killed = False  # finished by a signal: what the loop still logs before the process ends is not news
        if writer is not None:
            writer.before_flush = self.publish
        self._manual_alerts = ManualAlerts()

    # ---- logging ----------------------------------------------------------------------------------------------

    @property
    def step(self) -> int:
        """The step the next committed row gets."""
        return self._step

    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Record metrics at a step (wandb's semantics; see the module docstring). Never raises for bad values."""
        if not isinstance(data, Mapping):
            raise TypeError(f"log() takes a dict of metrics, not a {type(data).__name__}")
        values = flatten(data, self.notifier)
        with self._lock:
            if self._finished:
                if not self._killed:
                    self.notifier.once("log-after-finish", f"log() after finish() on run {self.name!r}; not stored")
                    return
            else:
                if step is not None:
                    if type(step) is not int:
                        step = _as_step(step)
                    if step < self._step:
                        self._refuse(values, step)
                        return
                    if step > self._step:
                        self._commit()
                        self._step = step
                    if commit is None:
                        commit = False
                self._pending.update(values)
                if commit is None or commit:
                    self._commit()
                return
        # a signal ended the run and the process ends once the writer is done: a loop still logging here would
        # only take CPU from that last flush (the signal's default action would have stopped it already)
        time.sleep(KILLED_LOG_PAUSE_S)

    def publish(self) -> None:
        """Write the open row's values now, keeping the row open at the same step.

        An explicit ``step=`` keeps its row open until a later step arrives (wandb's rule), which for a slow
        trainer means its newest step reaches the store one step late. ``expertrack run`` calls this when the
        program's output goes quiet, so the dashboard shows the newest step at once. Values logged later at the
        same step are written with the row's commit.
        """
        with self._lock:
            if self._pending and self._queue is not None and not self._finished:
                self._enqueue(self._step, time.time(), self._pending)
                self._pending = {}

    def _log_row(self, values: Mapping[str, Any], step: int, timestamp: float) -> None:
        """One whole row at ``step``, stamped with ``timestamp`` instead of now: ``import wandb`` keeps the
        wall times the run was logged at. Steps must increase, as for ``log``."""
        flat = flatten(values, self.notifier)
        with self._lock:
            if self._finished:
                return
            if self._pending:
                self._commit()
            if step < self._step:
                self._refuse(flat, step)
                return
            if flat and self._queue is not None:
                self._enqueue(step, float(timestamp), flat)
            self._step = step + 1

    def _log_series(self, values: Mapping[str, Any], index: int, timestamp: float) -> None:
        """Points outside the run's steps (system metrics: ``index`` is the sample's number), written as they come,
        even while ``finish()`` runs; they never open, move or commit the rows that ``log()`` makes."""
        flat = flatten(values, self.notifier)
        with self._lock:  # counted against the writer's bound like log()'s rows (a sampler thread, never a handler)
            self._enqueue(int(index), float(timestamp), flat)

    def _commit(self) -> None:
        """Emit the open row at the current step and advance (call with the lock held)."""
        pending = self._pending
        if pending:
            writer = self._writer
            if writer is not None:
                # inlined _enqueue: this is log()'s hot path
                if writer.logged_points - writer.settled_points < writer.max_queued_points:
                    writer.logged_points += len(pending)
                    writer.queue.append(Row(self._step, time.time(), pending))
                else:
                    writer.drop(len(pending))
            self._pending = {}
        self._step += 1

    def _enqueue(self, step: int, timestamp: float, values: dict[str, Any]) -> None:
        """Queue one row for the writer, or count it dropped past the writer's bound (call with the lock held)."""
        writer = self._writer
        if writer is None:
            return
        if writer.logged_points - writer.settled_points < writer.max_queued_points:
            writer.logged_points += len(values)
            writer.queue.append(Row(step, timestamp, values))
        else:
            writer.drop(len(values))

    def _refuse(self, values: dict[str, Any], step: int) -> None:
        key = next(iter(values), "<empty>")
        self.notifier.once(
            "step-decreased",
            f"log(): refused {key!r} at step {step}: run {self.name!r} is already at step {self._step} "
            "(steps must not decrease; these values were not stored; further refusals are counted silently)",
        )

    def define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        summary: str | None = None,
        goal: str | None = None,
        hidden: bool = False,
        **_ignored: Any,
    ) -> dict[str, Any]:
        """Declare how a metric (a name or a glob such as ``"val/*"``) is summarised and plotted."""
        if summary is not None:
            parse_summary_spec(summary)  # raises ValueError naming the bad part
        definition = {
            "name": name,
            "step_metric": step_metric,
            "summary": summary,
            "goal": goal,
            "hidden": hidden,
        }
        self._defs.append(definition)
        self._put(MetricDefs(list(self._defs)))
        return definition

    def alert(self, title: str, text: str = "", level: Any = None, wait_duration: Any = None) -> None:
        """wandb's ``run.alert``: an alert stored with the run, printed, and sent to the webhook (docs/alerts.md);
        ``wait_duration`` seconds hold back a repeat of the same title. Its step is the current row's."""
        if self._writer is not None and self._writer.alerts is not None:
            step = self._step if self._pending or self._step == 0 else self._step - 1
            self._manual_alerts.raise_alert(self._writer.alerts, step, title, text, level, wait_duration)
        else:  # a disabled run stores nothing, but the program asked for the alert to be seen
            say(f"alert [wandb] run {self.name}: {title}" + (f": {text}" if text else ""))

    # ---- files ------------------------------------------------------------------------------------------------

    def attach_file(self, name: str, data: bytes) -> None:
        """Store a whole file with the run (replacing one of the same name)."""
        self._put(FileChunk(name, bytes(data), True))

    def append_file(self, name: str, data: bytes) -> None:
        """Append bytes to a file of the run (stored as compressed chunks; used for live console logs)."""
        if data:
            self._put(FileChunk(name, bytes(data), False))

    # ---- lifecycle --------------------------------------------------------------------------------------------

    def flush(self, timeout: float = FINISH_DEADLINE_S) -> bool:
        """Write everything logged so far to the store, the open row of ``log(x, step=N)`` included (it stays
        open: values logged later at that step replace these); False if ``timeout`` passed first, the store
        could not be written (the message says why), or the run has finished (its writer is stopped)."""
        if self._writer is None:
            return True
        self.publish()
        return self._writer.flush(timeout)

    def finish(
        self,
        exit_code: int | None = None,
        signal: int | None = None,
        quiet: bool | None = None,
        timeout: float = FINISH_DEADLINE_S,
    ) -> None:
        """End the run: finished (exit code 0 or None), failed (non-zero), or killed (``signal`` given).

        Waits at most ``timeout`` seconds for the writer, and never for the network. Called while another
        thread is finishing the run (a SIGTERM during a finish), it returns when that finish has.
        """
        with self._lock:
            owner = not self._finished  # the first caller ends the run; any other waits for it to have ended
            if owner:
                if self._pending:
                    self._commit()
                self._finished = True
                self._killed = bool(signal)
        if not owner:
            self._ended.wait(timeout)
            return
        try:
            self._end(exit_code, signal, timeout)
        finally:
            self._ended.set()

    def _end(self, exit_code: int | None, signal: int | None, timeout: float) -> None:
        """Queue the end record and close the writer (``finish`` has marked the run finished)."""
        state = "killed" if signal else ("failed" if exit_code else "finished")
        self._put(End(state, exit_code if exit_code is not None else 0, signal, time.time()), force=True)
        for callback in self._on_finish:
            callback(self)
        if self._writer is not None and not self._writer.close(timeout):
            self.notifier.once(
                "finish-timeout",
                f"finish(): the store did not answer within {timeout:.0f} s; "
                f"{self._writer.unwritten_points():,} points of run {self.name!r} were not written",
            )
        for callback in self._after_end:  # finish(), the atexit handler and a SIGTERM (lifecycle.py) all end here
            callback(self)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.finish()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish(exit_code=130, signal=2)
        elif issubclass(exc_type, SystemExit):
            self.finish(exit_code=exit_status(exc.code if isinstance(exc, SystemExit) else None))
        else:
            self.finish(exit_code=1)

    def __repr__(self) -> str:
        return f"<expertrack.Run {self.name!r} id={self.id} project={self.project!r}>"

    # ---- plumbing ---------------------------------------------------------------------------------------------

    def _put(self, record: Record, force: bool = False) -> None:
        if self._queue is not None and (force or not self._finished):
            self._queue.append(record)

    def _config_changed(self, data: dict[str, Any]) -> None:
        self._put(ConfigSet(dumps(data)))

    def _summary_snapshot(self) -> dict[str, Any]:
        self.flush(timeout=5.0)  # the values logged so far, and summary keys set so far, are in the writer's state
        return self._summary_state.snapshot()

    def _summary_set(self, key: str, value: Any) -> None:
        if self._queue is None:
            self._summary_state.set_override(key, value)
        elif not self._finished:
            # through the queue, in order with log(): a key logged after this replaces it, one logged before not
            self._queue.append(SummarySet(str(key), value))

    def _summary_delete(self, key: str) -> None:
        self.flush(timeout=5.0)  # a value set or logged just before must be there to delete
        self._summary_state.delete(key)
        self._put(SummaryDeleted(str(key)))


def exit_status(code: object) -> int:
    """The exit status CPython makes of ``SystemExit.code``: None is 0, a non-int is printed and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if os.name == "posix" else code  # the status a POSIX parent sees keeps the low 8 bits
    return 1


def _as_step(step: Any) -> int:
    """Accept Python, NumPy and torch integers (anything with ``__index__``); refuse the rest clearly."""
    try:
        return operator.index(step)
    except TypeError:
        raise TypeError(f"log(step=...) must be an integer, not {type(step).__name__} {step!r}") from None
