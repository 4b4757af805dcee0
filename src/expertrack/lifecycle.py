"""Ending runs the way the process ends: normal exit, an uncaught exception, ``sys.exit(code)``, Ctrl-C, SIGTERM.

Installed once per process at ``init()``. Each run not finished by the user is finished by the atexit handler with
the state that matches how the interpreter stopped. A SIGTERM (a scheduler's "stop") finishes the run as killed
and then lets the signal do what it would have done. We only take over SIGTERM when nobody else handles it.

Why SIGTERM is finished on another thread. A Python signal handler runs on the main thread between two bytecodes
of whatever it interrupted, possibly inside ``Run.log`` while it holds the run's lock, or inside the writer's
condition; ``finish()`` waits on both, so finishing from the handler could wait forever (issue 12). The handler
therefore only wakes a finisher thread, started at install and waiting on an Event nobody else touches, and returns
at once. The finisher finishes every run (waiting on locks is safe there: the main thread keeps running and lets
them go) and then sends the process SIGTERM again with the default disposition, so the process ends with the
status a SIGTERM gives (-15 to a parent) as before. The handler restores the default disposition first: a second
SIGTERM while the runs finish ends the process at once, as a scheduler that insists expects. Meanwhile training
goes on for the fraction of a second the finish takes; what it logs after the run ended is not stored. A run's
after-end callbacks (``Run._after_end``: its last snapshot to a Modal Volume, expertrack.snapshots) run inside
``finish()``, so on the finisher thread too, before the process ends: a preempted container keeps its run.

How the exit status of a SystemExit is learnt. An uncaught SystemExit never reaches ``sys.excepthook``, and by the
time atexit handlers run CPython has already read its code and freed it. So every SystemExit we can reach carries an
``_ExitWitness`` in its ``__dict__``: CPython frees the SystemExit that ends the interpreter from C, after every
Python frame is gone (``_Py_HandleSystemExit``), while one that was caught is freed by the Python code that caught
it, and one that ends a thread by ``threading``'s own frames. So a witness freed on the main thread with no Python
frame on the stack belongs to the exit, and it records the status CPython derives from the code. A SystemExit that
is caught and swallowed is therefore never mistaken for the exit.

Which SystemExits carry a witness:
- those raised by ``sys.exit()`` and by site's ``exit()``/``quit()`` (both replaced at install), on every version;
- on Python >= 3.12, also any other (``raise SystemExit(main())``, a module that did ``from sys import exit`` before
  ``init()``), tagged by a ``sys.monitoring`` PY_UNWIND callback as it leaves a frame. That callback costs one small
  Python call per frame an exception unwinds through (about 0.2 us), and nothing on code that raises nothing (no
  per-call or per-line event: a training step that raises nothing pays nothing; on 3.10 and 3.11 nothing runs). It
  takes tool id 4, which no standard tool claims (hypothesis's scrutineer takes 3); if 4 is in use it is not
  installed and the limits of 3.10 apply.

Limits: what the run records when the status cannot be learnt.
- On Python 3.10 and 3.11, a SystemExit raised directly rather than through ``sys.exit``/``exit``/``quit`` is not
  seen (that would take a trace function, which slows every call): the run is recorded ``finished`` with exit code
  0, whatever the status. There, too, a handler that changes ``e.code`` and re-raises is not seen: the code that
  ``sys.exit`` was given is recorded.
- A SystemExit that outlives the interpreter's handling of it, because it is kept in a variable or in a reference
  cycle (``except SystemExit as e: saved = e; raise`` in a function), is freed only after the atexit handlers: the
  run is recorded ``finished`` with exit code 0.
"""

from __future__ import annotations

import atexit
import builtins
import os
import signal
import sys
import threading
import weakref
from types import CodeType, FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from expertrack.run import exit_status

if TYPE_CHECKING:
    from collections.abc import Callable

    from expertrack.run import Run

_runs: list[Run] = []
_finishing: weakref.WeakSet[Run] = weakref.WeakSet()  # runs whose finish() began: a SIGTERM waits for it to end
_installed = False
_exit: dict[str, Any] = {"exception": None, "status": None}  # how the interpreter is stopping, seen by our hooks
_original_exit = sys.exit
_original_excepthook = sys.excepthook
_WITNESS = "_expertrack_exit_witness"
_MONITORING_TOOL_ID = 4  # 0 debugger, 1 coverage, 2 profiler, 5 optimizer by convention; hypothesis takes 3
_terminate = threading.Event()  # set by the SIGTERM handler: the only thing it does that could touch a lock
_terminate_signal: list[int] = []
_finisher: list[threading.Thread] = []
_owner_pid: list[int] = []  # the process that installed the handler (a forked child inherits the handler only)


def install(run: Run) -> None:
    """Remember ``run`` so it is finished at exit; install the process hooks the first time."""
    global _installed
    _runs.append(run)
    run._on_finish.append(_forget)
    if _installed:
        forked = bool(_owner_pid) and _owner_pid[0] != os.getpid()
        if forked and signal.getsignal(signal.SIGTERM) is _on_sigterm and _on_main_thread():
            # a forked process starting its own run: the parent's finisher thread did not come along, and the
            # parent's runs are the parent's to end (their connections must not be used across a fork)
            _runs[:] = [run]
            _start_finisher()
        return
    _installed = True
    atexit.register(_at_exit)
    sys.excepthook = _excepthook
    sys.exit = _exit_hook  # type: ignore[assignment]
    for name in ("exit", "quit"):  # absent under `python -S`
        if hasattr(builtins, name):
            setattr(builtins, name, _Quitter(getattr(builtins, name)))
    _watch_unwinding()
    if _on_main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        _start_finisher()
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _start_finisher() -> None:
    """The thread that finishes the runs after a SIGTERM, started now so the handler never starts a thread."""
    _owner_pid[:] = [os.getpid()]
    thread = threading.Thread(target=_finish_on_signal, name="expertrack-sigterm", daemon=True)
    _finisher[:] = [thread]
    thread.start()


def _forget(run: Run) -> None:
    _finishing.add(run)
    if run in _runs:
        _runs.remove(run)


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    _exit["exception"] = kind
    _original_excepthook(kind, value, tb)


class _ExitWitness:
    """Rides on a SystemExit; when the exception is freed, tells whether the interpreter exited with it."""

    __slots__ = ("code",)

    def __init__(self, code: object) -> None:
        self.code = code

    def __del__(self) -> None:
        exiting = sys._getframe().f_back is None and threading.get_ident() == threading.main_thread().ident
        if exiting and _exit["status"] is None:  # the first wins: a SystemExit in an atexit callback changes nothing
            _exit["status"] = exit_status(self.code)

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (str, ())  # a pickled copy of the exception carries no witness into another process


def _watch(stop: SystemExit) -> None:
    witness = vars(stop).get(_WITNESS)
    if witness is None:
        setattr(stop, _WITNESS, _ExitWitness(stop.code))
    else:
        witness.code = stop.code  # the code may have been changed by a handler that re-raised


def _raise_watched(exit_function: Callable[[Any], object], code: Any) -> None:
    try:
        exit_function(code)
    except SystemExit as stop:  # `stop` is unbound when this block is left, so no frame keeps the exception alive
        _watch(stop)
        raise


def _exit_hook(code: Any = None) -> None:
    _raise_watched(_original_exit, code)


class _Quitter:
    """site's ``exit()``/``quit()``, which raise SystemExit themselves, past ``sys.exit``."""

    def __init__(self, quitter: Callable[[Any], object]) -> None:
        self._quitter = quitter

    def __repr__(self) -> str:
        return repr(self._quitter)

    def __call__(self, code: Any = None) -> None:
        _raise_watched(self._quitter, code)


def _watch_unwinding() -> None:
    monitoring = getattr(sys, "monitoring", None)  # Python >= 3.12
    if monitoring is None or monitoring.get_tool(_MONITORING_TOOL_ID) is not None:
        return
    monitoring.use_tool_id(_MONITORING_TOOL_ID, "expertrack")
    monitoring.register_callback(_MONITORING_TOOL_ID, monitoring.events.PY_UNWIND, _on_unwind)
    monitoring.set_events(_MONITORING_TOOL_ID, monitoring.events.PY_UNWIND)


def _on_unwind(code: CodeType, offset: int, exception: BaseException) -> None:
    if isinstance(exception, SystemExit):
        _watch(exception)


def _at_exit() -> None:
    if _terminate.is_set() and _finisher and _finisher[0].is_alive():
        # the program ended while a SIGTERM finish is under way: let it end the runs and the process as SIGTERM
        _finisher[0].join()
    kind = _exit["exception"]
    for run in list(_runs):
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            run.finish(exit_code=130, signal=signal.SIGINT)
        elif kind is not None:
            run.finish(exit_code=1)
        else:
            run.finish(exit_code=_exit["status"] or 0)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Record the request and return: no lock is taken here (see the module docstring)."""
    signal.signal(signum, signal.SIG_DFL)
    if not _owner_pid or _owner_pid[0] != os.getpid() or not _finisher[0].is_alive():
        os.kill(os.getpid(), signum)  # a forked child has no finisher thread: end as the signal would have
        return
    _terminate_signal.append(signum)
    _terminate.set()


def _finish_on_signal() -> None:
    """On the finisher thread: wait for a SIGTERM, finish every run as killed, then end the process with it."""
    _terminate.wait()
    signum = _terminate_signal[0] if _terminate_signal else signal.SIGTERM
    for run in [*_runs, *_finishing]:  # a run the program was finishing: its finish() returns when that one has
        run.finish(exit_code=128 + signum, signal=signum)
    os.kill(os.getpid(), signum)  # the handler restored the default disposition: this ends the process
