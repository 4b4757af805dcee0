"""Ending runs the way the process ends: normal exit, an uncaught exception, ``sys.exit(code)``, Ctrl-C, SIGTERM.

Installed once per process at ``init()``. Each run not finished by the user is finished by the atexit handler with
the state that matches how the interpreter stopped. A SIGTERM (a scheduler's "stop") finishes the run as killed
and then lets the signal do what it would have done. We only take over SIGTERM when nobody else handles it.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expertrack.tracking import Run

_runs: list[Run] = []
_installed = False
_exit = {"exception": None, "code": None}  # how the interpreter is stopping, seen by our hooks
_original_exit = sys.exit
_original_excepthook = sys.excepthook


def install(run: Run) -> None:
    """Remember ``run`` so it is finished at exit; install the process hooks the first time."""
    global _installed
    _runs.append(run)
    run._on_finish.append(_forget)
    if _installed:
        return
    _installed = True
    atexit.register(_at_exit)
    sys.excepthook = _excepthook
    sys.exit = _exit_hook  # type: ignore[assignment]
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _forget(run: Run) -> None:
    if run in _runs:
        _runs.remove(run)
    from expertrack import session

    session._clear_current(run)


def _excepthook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    _exit["exception"] = kind  # type: ignore[assignment]
    _original_excepthook(kind, value, tb)


def _exit_hook(code: Any = None) -> None:
    _exit["code"] = code
    _original_exit(code)


def _at_exit() -> None:
    kind = _exit["exception"]
    code = _exit["code"]
    for run in list(_runs):
        if kind is not None and issubclass(kind, KeyboardInterrupt):  # type: ignore[arg-type]
            run.finish(exit_code=130, signal=signal.SIGINT)
        elif kind is not None:
            run.finish(exit_code=1)
        elif code is not None and not isinstance(code, int):
            run.finish(exit_code=1)  # sys.exit("message") exits with status 1
        else:
            run.finish(exit_code=code or 0)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    for run in list(_runs):
        run.finish(exit_code=128 + signum, signal=signum)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
