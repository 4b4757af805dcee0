"""``expertrack run -- CMD`` as a library call: start the command, create its run, track its output, finish the
run the way the command ended, and return the exit status a shell would report.

Order matters: the command starts before the run is created, so no tracker thread exists yet when the relay is
forked (it runs Python code), and a command that cannot start leaves no empty run behind. Output the
command prints meanwhile waits in the tracker's queue.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expertrack.capture.child import Child, ChildExit, SpawnError, find_libstdbuf, forward_signals
from expertrack.capture.program import ProgramProbe
from expertrack.capture.tracker import OutputTracker
from expertrack.notify import say

if TYPE_CHECKING:
    from expertrack.run import Run

# Parsing and storing run at a lower priority than the child (and than the relay and the thread that drains it),
# so on a busy machine the trainer keeps the CPU and tracking catches up later (DESIGN.md rule 1).
TRACKING_NICENESS = 10


@dataclass
class WrapOptions:
    """What ``expertrack run`` was asked to do."""

    argv: list[str]
    project: str
    dir: Path | None = None
    name: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    parser: str | None = None
    mirror: str | None = None  # None: $EXPERTRACK_MIRROR, else auto (as init() decides)
    stdout_mode: str = "auto"  # auto, pty, lines or pipe (see capture/child.py)
    alerts: list[str] | None = None  # --alert specs (None: the defaults; see expertrack.alerts.config)


def wrap(options: WrapOptions) -> int:
    """Run the command to its end while tracking it; return its exit status (127/126 if it cannot start)."""
    tracker = OutputTracker(options.parser, announce=say)
    if options.stdout_mode == "lines" and find_libstdbuf() is None:
        say("coreutils' libstdbuf was not found: C programs will print in 4 KiB blocks (use --stdout pty for them)")
    child = Child(options.argv, tracker.on_output, stdout_mode=options.stdout_mode)
    with forward_signals(child):
        try:
            child.start()
        except SpawnError as err:
            say(str(err))
            return err.exit_code
        # at the program's own priority: at the lower one, a busy machine would stretch this import to seconds
        threading.Thread(target=_import_numpy, name="expertrack-preload", daemon=True).start()
        _lower_priority_of_new_threads()
        probe = None
        try:
            run = start_run(options)
            tracker.start(run)
            if run is not None:
                probe = ProgramProbe(options.argv, run)  # the program's own interpreter, asked off its path
                probe.start()
            ended = child.wait()
        finally:
            if child.running:  # our own code failed while the command still runs
                child.send_signal(signal.SIGTERM)
        finish_tracking(tracker, run, ended, probe)
    return ended.status


def finish_tracking(
    tracker: OutputTracker, run: Run | None, ended: ChildExit, probe: ProgramProbe | None = None
) -> None:
    """Parse what is left and finish the run the way the command ended; a failure here is said, and never
    changes the exit status the caller returns."""
    try:
        tracker.close()
        if probe is not None:
            probe.wait()  # a program shorter than the probe: its description still goes in before the end
        if run is not None:
            run.finish(exit_code=ended.status, signal=ended.signal)
    except Exception as exc:  # outer boundary: the command has ended; its exit status must come through
        say(f"could not finish tracking the run ({type(exc).__name__}: {exc})")


def start_run(options: WrapOptions) -> Run | None:
    """The run for the command, its flags and ``--config`` values as config; None (said once) if it cannot be
    created, in which case the command still runs with its output passed through."""
    import expertrack
    from expertrack.capture.parsers import parse_argv_config
    from expertrack.redact import redact_config
    from expertrack.session import tracking_mode

    if tracking_mode() == "disabled":  # a disabled run stores nothing: never claim to track it
        say("EXPERTRACK_MODE=disabled: running the command untracked (nothing is stored)")
        return None
    try:
        run = expertrack.init(
            project=options.project,
            name=options.name,
            group=options.group,
            tags=options.tags,
            config=redact_config({**parse_argv_config(options.argv), **options.config}),
            dir=options.dir,
            mirror=options.mirror,
            alerts=options.alerts,
        )
    except Exception as exc:  # outer boundary: tracking must never stop the command from running
        say(f"could not start tracking ({type(exc).__name__}: {exc}); running the command untracked")
        return None
    say(f"tracking run {run.name} ({run.id}) in {_shown(run.dir)}")
    return run


def _import_numpy() -> None:
    """Import NumPy now, off every other thread's path: the run's writer needs it for the summary of the first
    values it stores, and importing it then (0.2-0.5 s on a busy 2-core machine) would hold the program's first
    metrics back by as much (issue 18: every value in the store within a second of its line)."""
    import numpy  # noqa: F401


def _lower_priority_of_new_threads() -> None:
    """Lower this thread's priority; threads it starts from now on (the run's writer, the parser) inherit it.

    On Linux a nice value belongs to a thread, so the thread draining the relay, started earlier, keeps its own.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), TRACKING_NICENESS)
    except (OSError, AttributeError):  # not permitted, or not Unix: tracking simply shares the CPU
        pass


def _shown(directory: Path) -> str:
    """The tracking directory as the user would type it: relative when it is below the current directory."""
    try:
        relative = os.path.relpath(directory)
    except ValueError:  # another drive (Windows)
        return str(directory)
    return str(directory) if relative.startswith("..") else relative
