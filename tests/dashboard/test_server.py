"""Binding: loopback by default, a clear warning when the dashboard is reachable from the network."""

from __future__ import annotations

import subprocess
import sys
import time
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


def run_ui(directory: Path, host: str) -> str:
    """Start `expertrack ui` on ``host``, let it come up, stop it, and return what it printed."""
    exe = Path(sys.executable).with_name("expertrack")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "ui", "--dir", str(directory), "--host", host, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.5)
    proc.terminate()
    output, _ = proc.communicate(timeout=10)
    return output


def test_default_bind_is_loopback_and_quiet(tracking_dir: Path) -> None:
    output = run_ui(tracking_dir, "127.0.0.1")
    assert "WARNING" not in output and "http://127.0.0.1:" in output


def test_binding_wider_warns_clearly(tracking_dir: Path) -> None:
    output = run_ui(tracking_dir, "0.0.0.0")
    assert "WARNING: expertrack ui is listening on 0.0.0.0" in output
    assert "no login" in output


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
