"""`expertrack ui` in a child process, as a user starts it, for the tests that need a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`expertrack ui` in a child process, as a user starts it; ``token`` in $EXPERTRACK_UI_TOKEN when given
    (the readiness probe presents it), ``host`` the address it listens on (reached through 127.0.0.1), ``args``
    more options."""

    def __init__(
        self, directory: Path, token: str | None = None, host: str = "127.0.0.1", args: tuple[str, ...] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("expertrack")
        env = {k: v for k, v in os.environ.items() if k != "EXPERTRACK_UI_TOKEN"}
        if token is not None:
            env["EXPERTRACK_UI_TOKEN"] = token
        self.proc = subprocess.Popen(
            [str(exe), "ui", "--dir", str(directory), "--host", host, "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        probe = urllib.request.Request(f"{self.url}/api/health")
        if token is not None:
            probe.add_header("Authorization", f"Bearer {token}")
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(probe, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"expertrack ui did not start:\n{self.output}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output = self.proc.stdout.read() if self.proc.stdout else ""
