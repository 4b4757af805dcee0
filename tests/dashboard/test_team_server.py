"""`expertrack ui` as a team serves it (docs/team.md): beyond loopback only with a token, over real HTTP."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dashboard.builders import dense_run
from tests.dashboard.processes import Server, free_port

TOKEN = "team-token-5c1d7e29b8"


def ui_refused(directory: Path, host: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EXPERTRACK_UI_TOKEN"}
    if token is not None:
        env["EXPERTRACK_UI_TOKEN"] = token
    exe = Path(sys.executable).with_name("expertrack")
    args = [str(exe), "ui", "--dir", str(directory), "--host", host, "--port", str(free_port())]
    return subprocess.run(args, capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize(
    ("token", "said"),
    [(None, "needs a token: set $EXPERTRACK_UI_TOKEN (or --token)"), ("short-one", "use at least 16")],
)
def test_beyond_loopback_it_refuses_to_start_without_a_usable_token(
    tracking_dir: Path, token: str | None, said: str
) -> None:
    result = ui_refused(tracking_dir, "0.0.0.0", token)
    assert result.returncode == 1
    assert said in result.stderr and "serving" not in result.stdout
    assert token is None or token not in result.stdout + result.stderr


def get(url: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_server_on_every_address_answers_the_token_and_its_names_only(tracking_dir: Path) -> None:
    dense_run(tracking_dir)
    server = Server(tracking_dir, token=TOKEN, host="0.0.0.0", args=("--allowed-host", "dash.team.example"))
    try:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        status, body = get(server.url, "/api/runs", bearer)
        assert status == 200 and b"dense-a" in body
        status, body = get(server.url, "/api/runs", {})
        assert status == 401 and TOKEN.encode() not in body and b"dense-a" not in body
        assert get(server.url, "/api/runs", {**bearer, "Host": "rebound.example"})[0] == 400
        assert get(server.url, "/api/runs", {**bearer, "Host": "dash.team.example:8080"})[0] == 200  # --allowed-host
    finally:
        server.stop()
    assert TOKEN not in server.output
