"""Who may read the dashboard: the Host names it answers, the token it asks for, the headers it adds.

A team serves one dashboard on a network address (docs/team.md); every run is then readable by whoever reaches
it, so beyond loopback ``expertrack ui`` requires a token. How a client presents it:

- a browser opens ``/?token=TOKEN`` once: the server answers with a cookie (HttpOnly, so no script can read it;
  SameSite=Strict, so no other site's page can make the browser send it) and a redirect to the same address
  without the token, which leaves the address bar and the page's own links token-free;
- a script sends ``Authorization: Bearer TOKEN``.

The cookie holds an HMAC of the token, not the token, and its name is derived from the token too, so two
dashboards on one machine (another port, another token) keep their own. Every comparison is constant-time
(``hmac.compare_digest``). The token is never written to a log, a page, or an error message; a refused request
is told how to present it, not what it is.

Only the data needs the token (``/api/...``); the page's own files (``/``, ``/static/...``) are the same for
everyone and are served without it, so a link to the dashboard followed from another site (whose navigation a
SameSite=Strict cookie does not accompany) still loads the page, whose own requests then carry the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import parse_qsl, quote, urlencode

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from expertrack.dashboard.encode import JSON

TOKEN_ENV = "EXPERTRACK_UI_TOKEN"
MIN_TOKEN_LENGTH = 16
COOKIE_MAX_AGE_S = 30 * 24 * 3600  # a month; a new token invalidates every cookie of the old one at once
PROTECTED_PREFIX = "/api/"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")

# Scripts only from this server (so even a missed escape cannot run inline script); plotly needs inline styles.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # the page's address never leaves in a Referer
    (b"x-frame-options", b"DENY"),
]


def check_token(token: str) -> str | None:
    """Why ``token`` cannot serve as the dashboard's token, or None when it can. The message never quotes it."""
    generate = "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"the ui token is {len(token)} characters long; use at least {MIN_TOKEN_LENGTH}, e.g. from: {generate}"
    if not all("!" <= c <= "~" for c in token):
        return f"the ui token must be printable ASCII without spaces (it travels in a header), e.g. from: {generate}"
    return None


class SecurityHeaders:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every answer, refusals included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TokenGate:
    """ASGI middleware: ``/api/...`` answers only a request that presents ``token`` (see the module's docstring);
    ``?token=`` on any address sets the cookie and redirects to that address without it."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.cookie_value = _derive(self.token, b"cookie value")
        self.cookie_name = "expertrack_ui_" + _derive(self.token, b"cookie name")[:8]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        offered = [value for name, value in query if name == "token"]
        if offered:
            await self._exchange(scope, offered[-1], query)(scope, receive, send)
        elif not scope["path"].startswith(PROTECTED_PREFIX) or self._presented(Headers(scope=scope)):
            await self.app(scope, receive, send)
        else:
            await _refusal("this dashboard needs its token")(scope, receive, send)

    def _presented(self, headers: Headers) -> bool:
        scheme, _, credential = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(credential.strip(), self.token):
            return True
        cookie = cookie_parser(headers.get("cookie", "")).get(self.cookie_name)
        return cookie is not None and _same(cookie, self.cookie_value.encode())

    def _exchange(self, scope: Scope, offered: str, query: Sequence[tuple[str, str]]) -> JSON:
        """The answer to ``?token=``: the cookie and a redirect to the address without it, or a refusal."""
        if not _same(offered, self.token):
            return _refusal("wrong token")
        rest = urlencode([(name, value) for name, value in query if name != "token"])
        # A path on this server, so the redirect never depends on the Host header and never leaves the server
        # ("//other.site" would); the browser keeps the #fragment.
        path = scope["path"]
        path = quote(path, safe="/:@!$&'()*+,;=-._~") if path.startswith("/") and not path.startswith("//") else "/"
        answer = JSON({"redirect": path}, 303)
        answer.headers["location"] = path + (f"?{rest}" if rest else "")
        answer.headers["cache-control"] = "no-store"
        answer.set_cookie(
            self.cookie_name,
            self.cookie_value,
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="strict",
            secure=scope.get("scheme") == "https",
        )
        return answer


def _same(offered: str, secret: bytes) -> bool:
    """Whether ``offered`` is ``secret``, in constant time (its length aside)."""
    return hmac.compare_digest(offered.encode("utf-8", "replace"), secret)


def _derive(token: bytes, purpose: bytes) -> str:
    return hmac.new(token, b"expertrack ui " + purpose, hashlib.sha256).hexdigest()


def _refusal(reason: str) -> JSON:
    how = "open the dashboard once as /?token=YOUR_TOKEN, or send the header Authorization: Bearer YOUR_TOKEN"
    answer = JSON({"error": f"{reason}: {how}", "status": 401}, 401)
    answer.headers["www-authenticate"] = 'Bearer realm="expertrack ui"'
    return answer


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host names the dashboard answers when it listens on ``host`` (for ``TrustedHostMiddleware``).

    On loopback: only loopback names, so a page elsewhere whose DNS name is rebound to 127.0.0.1 cannot read runs.
    On one address: that address. On every address (0.0.0.0, ::): this machine's names and addresses, loopback
    included. Plus ``extra`` (``--allowed-host``: a name the team reaches it by; ``*`` answers any name)."""
    names = list(extra)
    if is_loopback(host):
        names += [*LOOPBACK_HOSTS, host]
    elif host.strip("[]") in WILDCARD_HOSTS:
        names += [*LOOPBACK_HOSTS, *_this_machine()]
    else:
        names.append(host)
    return sorted({_bracketed(name.lower()) for name in names})


def _bracketed(name: str) -> str:
    """An IPv6 address as a Host header carries it: in brackets."""
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def _this_machine() -> list[str]:
    """This machine's host name, fully qualified name, and the addresses they resolve to (no network asked
    beyond the resolver the system already uses)."""
    import socket

    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names.update(str(info[4][0]) for info in socket.getaddrinfo(name, None))
        except OSError:
            continue
    return sorted(name for name in names if name)
