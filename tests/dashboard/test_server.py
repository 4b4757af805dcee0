"""Binding: loopback by default; beyond it a token, and a clear warning (tokens: test_token.py, test_team_server.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from expertrack.dashboard.server import is_loopback, wide_bind_warning
from tests.dashboard.processes import free_port


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_warning_names_the_address_and_the_risk() -> None:
    text = wide_bind_warning("0.0.0.0", 8080)
    assert text.startswith("WARNING") and "0.0.0.0:8080" in text and "127.0.0.1" in text


def run_ui(directory: Path, host: str, token: str | None = None) -> str:
    """Start `expertrack ui` on ``host``, wait until it says it serves, stop it, and return what it printed."""
    exe = Path(sys.executable).with_name("expertrack")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "EXPERTRACK_UI_TOKEN"}
    if token is not None:
        env["EXPERTRACK_UI_TOKEN"] = token
    proc = subprocess.Popen(
        [str(exe), "ui", "--dir", str(directory), "--host", host, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # up to the line saying it serves (or its exit), however slow the machine
        lines.append(line)
        if "serving" in line:
            break
    proc.terminate()
    proc.wait(timeout=10)
    return "".join(lines) + proc.stdout.read()  # not communicate(): it would skip what the loop buffered


def test_default_bind_is_loopback_and_quiet(tracking_dir: Path) -> None:
    output = run_ui(tracking_dir, "127.0.0.1")
    assert "WARNING" not in output and "http://127.0.0.1:" in output


def test_binding_wider_warns_clearly_and_never_prints_the_token(tracking_dir: Path) -> None:
    token = "s3cret-team-token-0042"
    output = run_ui(tracking_dir, "0.0.0.0", token=token)
    assert "WARNING: expertrack ui is listening on 0.0.0.0" in output
    assert "holds the token" in output and "unencrypted" in output and "/?token=YOUR_TOKEN" in output
    assert token not in output


def test_a_port_in_use_is_a_clear_error_and_nothing_claims_to_serve(tracking_dir: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        exe = Path(sys.executable).with_name("expertrack")
        result = subprocess.run(
            [str(exe), "ui", "--dir", str(tracking_dir), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert f"try --port {port + 1}" in result.stderr
    assert "serving" not in result.stdout
