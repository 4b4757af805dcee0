"""The dashboard's HTTP side: a read-only JSON API over the store and the page's own static files.

Routes (all GET):
  /                               the page
  /static/{name}                  only the files named in STATIC (no directory is ever served)
  /api/health                     {"ok": true, ...}: the page's and the tests' readiness probe
  /api/runs?metrics=k1,k2         the runs table; last/best of the named scalar keys per run
  /api/runs/{ref}                 one run: config, summary, environment, keys
  /api/runs/{ref}/console?offset  its console output from a byte offset (live tail)
  /api/runs/{ref}/array?key&step  one array (e.g. moe/affinity [L,E,D]) at a step, for the MoE view
  /api/runs/{ref}/array_series?key  a small array at every step (e.g. a per-layer entropy), as columns
  /api/runs/{ref}/alerts          its alerts, oldest first: [{"rule","key","step","value","time","message"}]
  /api/series?key&runs&buckets&after&x&lo&hi&rank   one scalar key for several runs, min/max downsampled
  /api/grouped?key&runs&by&band&buckets       the same runs grouped (by=group|config.KEY): mean and band per group
Bad input answers 4xx with {"error": "..."}; nothing here writes to the store. Served with a token (beyond
loopback), /api/... asks for it (401 otherwise): see dashboard/guard.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from expertrack.dashboard.encode import JSON, PackedJSON
from expertrack.dashboard.guard import LOOPBACK_HOSTS, SecurityHeaders, TokenGate
from expertrack.errors import StoreError
from expertrack.store.location import is_postgres

STATIC_DIR = Path(__file__).parent / "static"
MAX_BUCKETS = 10_000
MAX_RUNS_PER_REQUEST = 500
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # steps and offsets are stored as SQLite's 64-bit integers
# zlib level 1: a 50-run chart's 1.22 MB answer becomes 634 KB in 72 ms, against 596 KB in 464 ms at level 9
# (Starlette's default; measured on the busy 2-core machine); small answers are not worth a gzip header.
GZIP_LEVEL = 1
GZIP_MIN_BYTES = 1024

# Served files, by the name the page asks for. A name not here is a 404: no path is ever joined from a request.
STATIC: dict[str, tuple[str, str]] = {
    name: (str(STATIC_DIR / name), media)
    for name, media in {
        "index.html": "text/html; charset=utf-8",
        "style.css": "text/css; charset=utf-8",
        "app.js": "text/javascript; charset=utf-8",
        "util.js": "text/javascript; charset=utf-8",
        "table.js": "text/javascript; charset=utf-8",
        "charts.js": "text/javascript; charset=utf-8",
        "moe.js": "text/javascript; charset=utf-8",
        "runpage.js": "text/javascript; charset=utf-8",
        "alerts.js": "text/javascript; charset=utf-8",
        "urlstate.js": "text/javascript; charset=utf-8",
        "grouped.js": "text/javascript; charset=utf-8",
        "compare.js": "text/javascript; charset=utf-8",
        "favicon.svg": "image/svg+xml",
    }.items()
}


def plotly_js() -> Path | None:
    """plotly.min.js as bundled in the installed ``plotly`` package (served from there, never fetched), or None."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


class Handlers:
    """The routes' bodies. Each opens the store read-only for its request, answers JSON, and closes it."""

    def __init__(self, directory: Path | str, open_api: Callable[[Any], Any]) -> None:
        from expertrack.store.location import describe

        self.directory = directory  # a tracking directory or a postgresql:// URL
        self.shown = describe(directory)  # as it may be shown: never a password
        self.open_api = open_api
        self._rows: Any = None
        self._series: Any = None  # a dashboard.cache.SeriesCache, made on first use (it needs NumPy)

    @contextmanager
    def api(self, required: bool = True) -> Iterator[Any]:
        """A fresh read-only reader of the store; None (or a 404 when ``required``) while there is no store."""
        try:
            api = self.open_api(self.directory)
        except StoreError as exc:
            raise HTTPException(503, f"cannot read the store: {exc}") from None
        if api is None and required:
            raise HTTPException(404, f"no store in {self.shown} yet: no run has been logged there")
        try:
            yield api
        finally:
            if api is not None:
                api.close()

    def health(self, request: Request) -> Response:
        return JSON({"ok": True, "dir": self.shown, "time": time.time()})

    def runs(self, request: Request) -> Response:
        metrics = _names(request, "metrics")
        with self.api(required=False) as api:
            runs = [] if api is None else api.runs()
            if self._rows is None:
                self._rows = _data().RowCache()
            rows = [self._rows.row(r, metrics) for r in runs]
        self._rows.forget_except({r["id"] for r in rows})
        body = JSON({"runs": rows, "dir": self.shown}).body
        # The page polls this every second; an unchanged table costs neither side a parse.
        etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        return Response(body, media_type="application/json", headers={"etag": etag, "cache-control": "no-cache"})

    def run(self, request: Request) -> Response:
        with_env = request.query_params.get("env", "") in ("1", "true", "yes")
        with self.api() as api:
            run = self._run(api, request)
            detail = _data().run_detail(run, with_env)
            # ranks="all" (issue 15): the ranks with series, and each rank's own state ({} for other runs)
            detail["ranks"] = run.ranks()
            detail["rank_states"] = {str(r): dataclasses.asdict(s) for r, s in run.rank_states().items()}
            return JSON(detail)

    def console(self, request: Request) -> Response:
        offset = _number(request, "offset", int, minimum=0)
        with self.api() as api:
            return JSON(_data().console(self._run(api, request), offset))

    def array(self, request: Request) -> Response:
        key = _required(request, "key")
        step = _number(request, "step", int)
        with self.api() as api:
            return JSON(_data().array_at(self._run(api, request), key, step))

    def array_series(self, request: Request) -> Response:
        key = _required(request, "key")
        with self.api() as api:
            return PackedJSON(_data().array_series(self._run(api, request), key))

    def alerts(self, request: Request) -> Response:
        # value: a number, null, or "NaN"/"Infinity"/"-Infinity" (JSON has none); time: unix seconds
        with self.api() as api:
            return JSON([alert.as_dict() for alert in self._run(api, request).alerts()])

    def series(self, request: Request) -> Response:
        key = _required(request, "key")
        refs = _names(request, "runs")
        if not refs:
            raise HTTPException(400, "runs: give at least one run id, comma-separated")
        if len(refs) > MAX_RUNS_PER_REQUEST:
            raise HTTPException(400, f"runs: at most {MAX_RUNS_PER_REQUEST} per request")
        buckets = _number(request, "buckets", int, minimum=1, maximum=MAX_BUCKETS) or 1000
        x = request.query_params.get("x", "step")
        if x not in ("step", "time"):
            raise HTTPException(400, f"x: 'step' or 'time', not {x!r}")
        lo, hi = _number(request, "lo", float), _number(request, "hi", float)
        after = _afters(request, len(refs))
        rank = _number(request, "rank", int, minimum=0) or 0  # ranks="all" runs: this rank's series
        with self.api() as api:
            runs, afters = [], []
            for ref, after_step in zip(refs, after):
                run = _data().find_run(api, ref)
                if rank and rank not in run.ranks():
                    continue  # like a key the run never logged: no series for it
                runs.append(run.at_rank(rank))
                afters.append(after_step)
            # the cache holds rank 0's series, which every other reader asks for; other ranks are read through
            cache = self.series_cache() if not rank else None
            out = _data().series_of_runs(runs, key, buckets, afters, lo, hi, x, with_times=x == "time", cache=cache)
        return PackedJSON({"key": key, "buckets": buckets, "series": out})

    def grouped(self, request: Request) -> Response:
        """One scalar key of several runs, grouped by ``by``: a mean line and a band per group."""
        from expertrack.dashboard import groups

        key = _required(request, "key")
        by = groups.check_by(_required(request, "by"))
        band = request.query_params.get("band", "std")
        refs = self._refs(request)
        buckets = _number(request, "buckets", int, minimum=1, maximum=MAX_BUCKETS) or 1000
        with self.api() as api:
            listed = {run.id: run for run in api.runs()}  # one query for the page's ids, not one per run
            runs = [listed.get(ref) or _data().find_run(api, ref) for ref in refs]
            return PackedJSON(groups.grouped_series(runs, key, by, band, buckets, self.series_cache()))

    def series_cache(self) -> Any:
        """The decoded series shared by this server's chart requests (see dashboard/cache.py)."""
        if self._series is None:
            from expertrack.dashboard.cache import SeriesCache

            self._series = SeriesCache()
        return self._series

    @staticmethod
    def _refs(request: Request) -> list[str]:
        refs = _names(request, "runs")
        if not refs:
            raise HTTPException(400, "runs: give at least one run id, comma-separated")
        if len(refs) > MAX_RUNS_PER_REQUEST:
            raise HTTPException(400, f"runs: at most {MAX_RUNS_PER_REQUEST} per request")
        return refs

    @staticmethod
    def _run(api: Any, request: Request) -> Any:
        return _data().find_run(api, request.path_params["ref"])


def _data() -> ModuleType:
    """``expertrack.dashboard.data``, imported on first use: the server answers before NumPy has loaded, and
    ``warm_up`` loads it in the background right after start-up."""
    from expertrack.dashboard import data

    return data


def _import_read_side() -> None:
    """What the charts import on first use (NumPy, the store's decoding, the grouped charts' aggregation): a
    grouped chart's first request imported ``groups`` itself (~6 ms on a busy machine)."""
    _data()
    from expertrack.dashboard import groups  # noqa: F401


@asynccontextmanager
async def warm_up(app: Starlette) -> AsyncIterator[None]:
    # A moment after start-up, so the import does not compete with binding the socket for the GIL.
    timer = threading.Timer(0.3, _import_read_side)
    timer.daemon = True
    timer.start()
    yield


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if not value:
        raise HTTPException(400, f"{name}: required")
    if len(value) > 1000:
        raise HTTPException(400, f"{name}: longer than 1000 characters")
    return value


def _names(request: Request, name: str) -> list[str]:
    """A comma-separated list parameter, empty items dropped."""
    return [item for item in request.query_params.get(name, "").split(",") if item]


def _number(request: Request, name: str, kind: type, minimum: float | None = None, maximum: float | None = None) -> Any:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        wanted = "an integer" if kind is int else "a number"
        raise HTTPException(400, f"{name}: expected {wanted}, got {raw[:200]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise HTTPException(400, f"{name}: must be finite, got {raw!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise HTTPException(400, f"{name}: must lie in [{minimum}, {maximum}], got {raw!r}")
    if kind is int and not INT64_MIN <= value <= INT64_MAX:  # SQLite would raise OverflowError: a 500
        raise HTTPException(400, f"{name}: must lie in the 64-bit integer range, got {raw[:40]!r}")
    return value


def _afters(request: Request, count: int) -> list[int | None]:
    """``after``: the last step the page already has, per run in ``runs`` order (empty = from the start)."""
    raw = request.query_params.get("after")
    if raw is None:
        return [None] * count
    items = raw.split(",")
    if len(items) != count:
        raise HTTPException(400, f"after: {len(items)} values for {count} runs; give one per run (may be empty)")
    try:
        steps = [int(item) if item else None for item in items]
    except ValueError:
        raise HTTPException(400, f"after: expected comma-separated integer steps, got {raw[:200]!r}") from None
    for step in steps:
        if step is not None and not INT64_MIN <= step <= INT64_MAX:
            raise HTTPException(400, f"after: steps are 64-bit integers, got {str(step)[:40]!r}")
    return steps


def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "plotly.min.js":
        bundle = plotly_js()
        if bundle is None:
            raise HTTPException(
                500, "plotly.min.js not found: install the charts with pip install 'expertrack[dashboard]'"
            )
        media = "text/javascript; charset=utf-8"
        return FileResponse(bundle, media_type=media, headers={"cache-control": "public, max-age=86400"})
    if name not in STATIC:
        raise HTTPException(404, f"no static file {name!r}")
    path, media = STATIC[name]
    return FileResponse(path, media_type=media, headers={"cache-control": "no-cache"})


def index(request: Request) -> Response:
    path, media = STATIC["index.html"]
    return FileResponse(path, media_type=media, headers={"cache-control": "no-cache"})


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSON({"error": exc.detail, "status": exc.status_code}, exc.status_code)


def open_store_readonly(directory: Path | str) -> Any:
    """The core's read-only reader for ``directory`` (or a ``postgresql://`` URL), or None when there is no store
    there yet (never creates one).

    Each request opens a fresh reader; ``Store(readonly=True)`` memory-maps the file, so its pages come straight
    from the OS cache (a 1,000,000-point series reads ~2-3x faster than through SQLite's own page cache). A
    PostgreSQL reader is taken from a few kept open instead: connecting and authenticating costs 30-40 ms, more
    than most requests.
    """
    from expertrack import Api

    if is_postgres(directory):
        return _PooledReader.take(str(directory))
    api = Api(directory)
    store = api.store
    if store is None:
        return None
    return api  # the core's read-only Store already memory-maps the file


class _PooledReader:
    """An ``Api`` on a PostgreSQL store whose ``close()`` keeps its connection for the next request (up to
    ``KEEP`` per location); a connection that broke (the server restarted) is dropped, and the next request
    connects afresh."""

    KEEP = 4
    _idle: ClassVar[dict[str, list[Any]]] = {}
    _lock = threading.Lock()

    @classmethod
    def take(cls, url: str) -> Any:
        from expertrack import Api

        with cls._lock:
            idle = cls._idle.setdefault(url, [])
            store = idle.pop() if idle else None
        if store is not None and not store.alive():  # the server went away meanwhile: connect afresh
            store.close()
            store = None
        api = Api(url)
        if store is not None:
            api._store = store
        if api.store is None:  # an empty database: no runs yet
            return None
        api.close = lambda: cls._give_back(url, api)  # type: ignore[method-assign]
        return api

    @classmethod
    def _give_back(cls, url: str, api: Any) -> None:
        store, api._store = api._store, None
        if store is None:
            return
        with cls._lock:
            idle = cls._idle.setdefault(url, [])
            if not store.conn.closed and len(idle) < cls.KEEP:
                idle.append(store)
                return
        store.close()


def create_app(
    directory: Path | str,
    allowed_hosts: Sequence[str] | None = LOOPBACK_HOSTS,
    open_api: Callable[[Any], Any] = open_store_readonly,
    token: str | None = None,
) -> ASGIApp:
    """The dashboard as an ASGI app reading the store in ``directory``.

    ``allowed_hosts``: the Host names it answers (loopback only by default, which stops DNS-rebinding pages
    from reading runs; see ``guard.allowed_hosts``); None answers any. ``token``: when given, ``/api/...``
    answers only requests that present it (see dashboard/guard.py).
    """
    h = Handlers(directory if is_postgres(directory) else Path(directory), open_api)
    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/health", h.health),
        Route("/api/runs", h.runs),
        Route("/api/series", h.series),
        Route("/api/grouped", h.grouped),
        Route("/api/runs/{ref}", h.run),
        Route("/api/runs/{ref}/console", h.console),
        Route("/api/runs/{ref}/array", h.array),
        Route("/api/runs/{ref}/array_series", h.array_series),
        Route("/api/runs/{ref}/alerts", h.alerts),
    ]
    # Outermost first: the Host check (answers "Invalid host header", 400), the security headers on every
    # answer, the token, then gzip when the browser accepts it: a team's dashboard is read over a network, where
    # a 50-run chart's 1.2 MB costs more to send than to compress (see GZIP_LEVEL).
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts or ["*"]), www_redirect=False),
        Middleware(SecurityHeaders),
    ]
    if token is not None:
        middleware.append(Middleware(TokenGate, token=token))
    middleware.append(Middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL))
    return Starlette(
        routes=routes, exception_handlers={HTTPException: http_error}, lifespan=warm_up, middleware=middleware
    )
