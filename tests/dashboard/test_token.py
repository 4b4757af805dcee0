"""The dashboard served with a token: what a browser and a script present, and what the token never appears in.

In process, through Starlette's TestClient (httpx); tests/dashboard/test_team_server.py starts the real command.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from expertrack.dashboard.app import create_app
from expertrack.dashboard.guard import allowed_hosts, check_token
from tests.dashboard.builders import dense_run

TOKEN = "tok-3f9a8c1e5b7d2460aa"


def client(directory: Path, token: str | None = TOKEN, base_url: str = "http://127.0.0.1:8080") -> TestClient:
    # follow_redirects=False: the tests look at the redirect a browser would follow
    return TestClient(create_app(directory, token=token), base_url=base_url, follow_redirects=False)


def everything_said(response) -> str:
    return response.text + "".join(f"{name}: {value}\n" for name, value in response.headers.items())


def test_data_needs_the_token_and_the_refusal_says_how_without_quoting_it(tracking_dir: Path) -> None:
    dense_run(tracking_dir)
    c = client(tracking_dir)
    for path in ("/api/runs", "/api/health", "/api/series?key=train/loss&runs=x"):
        response = c.get(path)
        assert response.status_code == 401, path
        assert "/?token=" in response.json()["error"] and "Authorization: Bearer" in response.json()["error"]
        assert TOKEN not in everything_said(response)
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = c.get("/api/runs", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert wrong.status_code == 401 and TOKEN not in everything_said(wrong)


def test_a_script_presents_it_as_a_bearer_token(tracking_dir: Path) -> None:
    dense_run(tracking_dir)
    response = client(tracking_dir).get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and [r["name"] for r in response.json()["runs"]] == ["dense-a"]


def test_a_browser_presents_it_once_and_keeps_a_cookie_that_is_not_the_token(tracking_dir: Path) -> None:
    dense_run(tracking_dir)
    c = client(tracking_dir)
    assert c.get("/").status_code == 200  # the page itself is the same for everyone: it loads, then asks
    response = c.get(f"/?token={TOKEN}&keep=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/?keep=1"  # the address bar loses the token, keeps the rest
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain HTTP here: a Secure cookie would never come back
    assert TOKEN not in everything_said(response)
    runs = c.get("/api/runs")  # the client sends the cookie back, as a browser does
    assert runs.status_code == 200 and len(runs.json()["runs"]) == 1
    assert TOKEN not in everything_said(runs)


def test_the_redirect_stays_on_this_server(tracking_dir: Path) -> None:
    c = client(tracking_dir)
    assert c.get(f"http://127.0.0.1:8080//evil.example/x?token={TOKEN}").headers["location"] == "/"
    assert c.get(f"/static/a%0d%0ab?token={TOKEN}").headers["location"] == "/static/a%0D%0Ab"


def test_a_wrong_token_in_the_address_sets_no_cookie(tracking_dir: Path) -> None:
    c = client(tracking_dir)
    response = c.get("/?token=not-the-token-at-all")
    assert response.status_code == 401 and "set-cookie" not in response.headers
    assert "wrong token" in response.json()["error"]
    assert c.get("/api/runs").status_code == 401


def test_a_cookie_of_another_token_is_refused(tracking_dir: Path) -> None:
    other = client(tracking_dir, token="another-token-of-16+")
    other.get("/?token=another-token-of-16+")
    c = client(tracking_dir)
    c.cookies = other.cookies  # a dashboard on another port of this machine shares the browser's cookie jar
    assert c.get("/api/runs").status_code == 401


def test_without_a_token_loopback_answers_everyone(tracking_dir: Path) -> None:
    assert client(tracking_dir, token=None).get("/api/runs").status_code == 200


@pytest.mark.parametrize(
    ("token", "problem"),
    [("short", "at least 16"), ("sixteen chars ok!", "without spaces"), ("ü" * 20, "printable ASCII")],
)
def test_weak_tokens_are_refused_without_being_quoted(token: str, problem: str) -> None:
    message = check_token(token)
    assert message is not None and problem in message and token not in message
    assert check_token(TOKEN) is None


def test_host_names_answered(tracking_dir: Path) -> None:
    """Loopback: loopback names only (DNS rebinding); one address: it; every address: this machine's names."""
    import socket

    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "[::1]", "localhost"]
    assert allowed_hosts("10.1.2.3", ("dash.team.example",)) == ["10.1.2.3", "dash.team.example"]
    assert "[2001:db8::5]" in allowed_hosts("2001:db8::5")
    wide = allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() in wide and "127.0.0.1" in wide
    app = create_app(tracking_dir, allowed_hosts=allowed_hosts("10.1.2.3", ("dash.team.example",)), token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for url, status in (("http://dash.team.example", 200), ("http://10.1.2.3:8080", 200), ("http://evil.test", 400)):
        assert TestClient(app, base_url=url).get("/api/health", headers=bearer).status_code == status, url


def test_an_ipv6_loopback_host_is_answered(tracking_dir: Path) -> None:
    app = create_app(tracking_dir, allowed_hosts=allowed_hosts("::1"))
    assert TestClient(app, base_url="http://[::1]:8080").get("/api/health").status_code == 200
