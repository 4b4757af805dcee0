"""Running the dashboard under uvicorn: loopback by default; beyond it, with a token and a clear warning."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import threading
from pathlib import Path
from types import FrameType

import uvicorn

from expertrack.dashboard.app import create_app
from expertrack.dashboard.guard import TOKEN_ENV, allowed_hosts, check_token, is_loopback
from expertrack.store.location import describe

EXIT_GRACE_S = 1.0  # how long requests in flight get to finish after SIGTERM or Ctrl-C


def wide_bind_warning(host: str, port: int) -> str:
    """The warning printed when the server binds beyond loopback: who can read what, and how to undo it."""
    return (
        f"WARNING: expertrack ui is listening on {host}:{port}, beyond this machine.\n"
        "  Whoever reaches this address and holds the token reads every run in the store (names, configs,\n"
        "  metrics, console logs). It is plain HTTP: the token and the runs cross the network unencrypted, so\n"
        "  serve it on a network you trust, behind a TLS proxy, or reach it through an SSH tunnel:\n"
        "  ssh -L 8080:127.0.0.1:8080 HOST (and --host 127.0.0.1, the default)"
    )


class ListenError(OSError):
    """The dashboard cannot listen on the address it was given (the port is taken, the host is not ours)."""


class TokenError(ValueError):
    """Beyond loopback without a token, or a token too weak to serve as one (the message never quotes it)."""


def check_access(host: str, token: str | None) -> None:
    """``TokenError`` when the dashboard would serve ``host`` without a usable token (needed beyond loopback)."""
    if token is None:
        if not is_loopback(host):
            raise TokenError(
                f"expertrack ui on {host} (beyond this machine) needs a token: set ${TOKEN_ENV} (or --token), e.g.\n"
                f"  export {TOKEN_ENV}=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')\n"
                "and give it to the people who may read the runs; or serve on 127.0.0.1 (the default)"
            )
        return
    problem = check_token(token)
    if problem is not None:
        raise TokenError(problem)


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


def serve(
    directory: Path | str,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "warning",
    token: str | None = None,
    extra_hosts: tuple[str, ...] = (),
) -> None:
    """Serve the dashboard for the store in ``directory`` until interrupted.

    ``TokenError`` beyond loopback without a ``token``; ``ListenError`` when the address cannot be had (both
    checked before anything is printed, so "serving" is only said once it is true). ``extra_hosts``: Host names
    answered besides the address's own (``--allowed-host``)."""
    check_access(host, token)
    check_address(host, port)
    if not is_loopback(host):
        print(wide_bind_warning(host, port), file=sys.stderr, flush=True)
    app = create_app(directory, allowed_hosts=allowed_hosts(host, extra_hosts), token=token)
    shown = f"[{host}]" if ":" in host else host
    how = (
        "\n  with a token: a browser opens the page once as /?token=YOUR_TOKEN (it then keeps it in a cookie),"
        "\n  a script sends the header Authorization: Bearer YOUR_TOKEN"
    )
    where = f"{describe(directory)} at http://{shown}:{port}/"
    print(f"expertrack ui: serving {where}  (Ctrl-C to stop){how if token else ''}", flush=True)
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
