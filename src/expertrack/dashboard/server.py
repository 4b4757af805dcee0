"""Running the dashboard under uvicorn, with a clear warning when it is reachable beyond this machine."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

import uvicorn

from expertrack.dashboard.app import LOOPBACK_HOSTS, create_app
from expertrack.store.location import describe

EXIT_GRACE_S = 1.0  # how long requests in flight get to finish after SIGTERM or Ctrl-C


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def wide_bind_warning(host: str, port: int) -> str:
    """The warning printed when the server binds beyond loopback: who can read what, and how to undo it."""
    return (
        f"WARNING: expertrack ui is listening on {host}:{port}, beyond this machine.\n"
        "  Anyone who can reach this address can read every run in the store (names, configs, metrics,\n"
        "  console logs); there is no login. Use --host 127.0.0.1 (the default) unless you mean it,\n"
        "  or reach a remote machine through an SSH tunnel: ssh -L 8080:127.0.0.1:8080 HOST"
    )


class ListenError(OSError):
    """The dashboard cannot listen on the address it was given (the port is taken, the host is not ours)."""


def check_address(host: str, port: int) -> None:
    """``ListenError`` saying why and what to do when ``host``:``port`` cannot be listened on (the port is
    taken, the address is not this machine's). The probe socket is closed again: uvicorn binds its own."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    try:
        socket.create_server((host.strip("[]"), port), family=family).close()
    except OSError as exc:
        hint = f" (another expertrack ui? try --port {port + 1})" if exc.errno == errno.EADDRINUSE else ""
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ListenError(f"cannot listen on {host}:{port}: {reason}{hint}") from None


def serve(directory: Path | str, host: str = "127.0.0.1", port: int = 8080, log_level: str = "warning") -> None:
    """Serve the dashboard for the store in ``directory`` until interrupted; ``ListenError`` when the address
    cannot be had (checked before anything is printed, so "serving" is only said once it is true)."""
    check_address(host, port)
    loopback = is_loopback(host)
    if not loopback:
        print(wide_bind_warning(host, port), file=sys.stderr, flush=True)
    app = create_app(directory, allowed_hosts=(*LOOPBACK_HOSTS, host.lower()) if loopback else None)
    shown = f"[{host}]" if ":" in host else host
    print(f"expertrack ui: serving {describe(directory)} at http://{shown}:{port}/  (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, server_header=False, ws="none"
    )
    PromptExitServer(config).run()


class PromptExitServer(uvicorn.Server):
    """``uvicorn.Server`` whose shutdown on SIGTERM or Ctrl-C has a deadline of ``EXIT_GRACE_S``.

    uvicorn waits for requests in flight before it exits, and a request reading a huge array (a 10,000,000-
    element array at every step) runs for minutes in a worker thread that cannot be interrupted. The dashboard
    only reads, so nothing is lost by leaving such a request unanswered: past the deadline the process exits
    at once, with the status a shell gives that signal (128 + N).
    """

    exit_timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.exit_timer is None:
            self.exit_timer = threading.Timer(EXIT_GRACE_S, _exit_now, (sig,))
            self.exit_timer.daemon = True  # a prompt graceful shutdown does not wait for it
            self.exit_timer.start()


def _exit_now(sig: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(128 + sig)
