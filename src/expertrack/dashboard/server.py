"""Running the dashboard under uvicorn, with a clear warning when it is reachable beyond this machine."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
from pathlib import Path

from expertrack.dashboard.app import LOOPBACK_HOSTS, create_app


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


def serve(directory: Path, host: str = "127.0.0.1", port: int = 8080, log_level: str = "warning") -> None:
    """Serve the dashboard for the store in ``directory`` until interrupted; ``ListenError`` when the address
    cannot be had (checked before anything is printed, so "serving" is only said once it is true)."""
    import uvicorn

    check_address(host, port)
    loopback = is_loopback(host)
    if not loopback:
        print(wide_bind_warning(host, port), file=sys.stderr, flush=True)
    app = create_app(directory, allowed_hosts=(*LOOPBACK_HOSTS, host.lower()) if loopback else None)
    shown = f"[{host}]" if ":" in host else host
    print(f"expertrack ui: serving {directory} at http://{shown}:{port}/  (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, server_header=False, ws="none")
