"""Live replication: a run's copy kept in another store (a shared PostgreSQL) within a few seconds while it trains.

``start()`` is the hook ``expertrack.init(replicate_to=...)`` calls (also ``$EXPERTRACK_REPLICATE_TO`` and
``expertrack run --replicate-to``): it launches ``expertrack.replicate.follower`` as a separate, low-priority
process, like the W&B mirror, so the target being slow or down never touches training (``log()`` never waits on
it). The follower copies what is new twice a second with ``expertrack.store.copy`` (idempotent, resumable),
says on stderr once when the target is down and once when it is back, makes a final copy when the run ends, and
exits. The target location travels to the follower in its environment, never on its command line (a URL may hold
a password). See docs/storage.md, "Live replication".
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENV_TARGET = "EXPERTRACK_REPLICATE_TARGET"  # the follower's target location (environment, not argv)
ENV_REPLICATE_TO = "EXPERTRACK_REPLICATE_TO"  # the user's setting: replicate every run to this location

_said: set[str] = set()


def _say_once(topic: str, message: str) -> None:
    if topic in _said:
        return
    _said.add(topic)
    from expertrack.notify import say

    say(message)


def setting(replicate_to: str | os.PathLike[str] | None) -> str | None:
    """``init(replicate_to=...)``, else ``$EXPERTRACK_REPLICATE_TO``, else None (no replication)."""
    if replicate_to is not None and str(replicate_to).strip():
        return str(replicate_to)
    return os.environ.get(ENV_REPLICATE_TO, "").strip() or None


def start(run_id: str, store_path: Path, location: str) -> subprocess.Popen[bytes] | None:
    """Start replicating ``run_id`` from the store at ``store_path`` to ``location``; returns at once and never
    raises (a problem is said once, and the run is kept locally: ``expertrack push`` can copy it later)."""
    from expertrack.store.location import describe, is_postgres, sqlite_path

    refused = None
    if "://" in location and not is_postgres(location):
        refused = "it is neither a directory nor a postgresql:// URL"
        location = _without_password(location)
    elif not is_postgres(location) and sqlite_path(location) == Path(store_path).resolve():
        refused = "it is the run's own store"
    if refused:
        _say_once(f"refused-{location}", f"not replicating to {describe(location)}: {refused}")
        return None
    try:
        process = launch(run_id, Path(store_path), location)
    except Exception as exc:  # the replication's outer boundary: training goes on with its local store
        _say_once(
            f"start-error-{run_id}",
            f"replication to {describe(location)} could not start ({type(exc).__name__}); the run is kept locally; "
            f"`expertrack push {run_id} --to LOCATION` copies it later",
        )
        return None
    _say_once(
        f"started-{run_id}",
        f"replicating run {run_id} to {describe(location)} from a background process",
    )
    return process


def _without_password(url: str) -> str:
    """Any URL without the password of its user part (``describe`` knows PostgreSQL's only)."""
    scheme, _, rest = url.partition("://")
    host_part, slash, path = rest.partition("/")
    if "@" in host_part:
        user, _, host = host_part.rpartition("@")
        host_part = f"{user.split(':', 1)[0]}@{host}"
    return f"{scheme}://{host_part}{slash}{path}"


def launch(run_id: str, store_path: Path, location: str) -> subprocess.Popen[bytes]:
    """``python -m expertrack.replicate.follower`` for one run, in a session of its own (Ctrl-C reaches training,
    not the follower, which then makes the final copy). It writes its few messages to this process's stderr."""
    from expertrack.followers import spawn

    # the URL travels in the environment, never on the command line (where `ps` shows it, password included)
    return spawn(
        "expertrack.replicate.follower", store_path, run_id, env={ENV_TARGET: location}, unset=[ENV_REPLICATE_TO]
    )


def local_first(
    dir: str | os.PathLike[str] | None, replicate_to: str | os.PathLike[str] | None
) -> tuple[str | os.PathLike[str] | None, str | None]:
    """(the directory a run writes, the location it replicates to or None) for ``init(dir=..., replicate_to=...)``.

    Writers stay local first (DESIGN.md): ``init(dir="postgresql://...")`` or ``$EXPERTRACK_DIR`` set to such a
    URL writes the local default store (``./expertrack-runs``) as usual and replicates to the URL; said once."""
    from expertrack.paths import DEFAULT_DIR_NAME, ENV_DIR
    from expertrack.store.location import describe, is_postgres

    target = setting(replicate_to)
    given = str(dir) if dir is not None and str(dir) else None
    where = "dir" if given is not None else f"${ENV_DIR}"
    url = given if given is not None else os.environ.get(ENV_DIR, "").strip() or None
    if url is None or not is_postgres(url):
        return dir, target
    local = Path.cwd() / DEFAULT_DIR_NAME
    _say_once(
        f"local-first-{url}",
        f"{where} names the database {describe(url)}: runs are written to the local store in {local} as usual "
        f"and replicated to {describe(url)} while they train",
    )
    return local, target or url
