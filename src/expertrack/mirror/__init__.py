"""The W&B mirror: the local store stays the source of truth, W&B gets a copy that can always be completed.

``start()`` is the hook ``expertrack.init()`` calls: it decides whether to mirror and launches the live mirror
(``expertrack.mirror.follower``) as a separate process, so training never waits on W&B nor shares its
interpreter lock with it. ``mirror_status()`` is the line ``expertrack show`` prints. Nothing here imports
wandb; only the mirror process and ``expertrack sync`` do. See docs/wandb.md.
"""

from __future__ import annotations

import netrc
import os
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from expertrack.mirror.state import mirror_status
from expertrack.notify import Notifier

__all__ = ["mirror_status", "start", "wandb_configured", "wandb_importable"]

MODES = ("auto", "wandb", "off")
# this process's, not a run's: a sweep of runs in one process hears each of these once
_said = Notifier()


def wandb_importable() -> bool:
    """Whether the real wandb is installed, without importing it (importing costs about 0.5 s); under the
    ``import wandb`` stand-in (expertrack.standin) ``find_spec("wandb")`` would find the stand-in, so the search
    looks past it."""
    from expertrack.standin import real_wandb_importable

    return real_wandb_importable()


def wandb_configured() -> str | None:
    """How W&B is configured for this process ("offline", "api key", "netrc", "settings"), or None."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode == "disabled":
        return None
    if mode in ("offline", "dryrun"):
        return "offline"
    if os.environ.get("WANDB_API_KEY", "").strip():
        return "api key"
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        path = os.environ.get("NETRC") or None
        if netrc.netrc(path).authenticators(host):
            return "netrc"
    except (OSError, netrc.NetrcParseError):
        pass
    settings = Path(os.environ.get("WANDB_CONFIG_DIR") or Path.home() / ".config" / "wandb") / "settings"
    try:
        text = settings.read_text()
    except OSError:
        return None
    lines = [line.replace(" ", "").lower() for line in text.splitlines()]
    return "settings" if any(line in ("mode=offline", "mode=dryrun") for line in lines) else None


def start(run_id: str, store_path: Path, mode: str, wandb_mode: str | None = None) -> None:
    """Start mirroring ``run_id`` to W&B when ``mode`` (auto, wandb, off) and the environment call for it.

    Returns at once and never raises: a problem is said once on stderr and the run is kept locally.
    """
    try:
        _start(run_id, Path(store_path), mode, wandb_mode)
    except Exception as exc:  # the mirror's outer boundary: W&B is optional, training goes on
        _said.once(
            "start-error",
            f"the W&B mirror could not start ({type(exc).__name__}: {exc}); "
            "the run is kept locally only; `expertrack sync` can mirror it later",
        )


def _start(run_id: str, store_path: Path, mode: str, wandb_mode: str | None) -> None:
    mode = (mode or "auto").lower()
    # init(mode="offline"), as in wandb: the mirror writes offline run directories, never the network
    offline = wandb_mode in ("offline", "dryrun")
    if mode == "off":
        return
    if mode not in MODES:
        _said.once("bad-mode", f"mirror={mode!r} is not one of {', '.join(MODES)}; not mirroring to W&B")
        return
    if os.environ.get("WANDB_MODE", "").strip().lower() == "disabled":
        _said.once("disabled", "WANDB_MODE=disabled: not mirroring to W&B; the run is kept locally only")
        return
    if not wandb_importable():
        _said.once(
            "no-wandb",
            "wandb is not installed, so the run is kept locally only (to mirror runs to W&B: "
            "pip install 'expertrack[wandb]', then `expertrack sync`)",
        )
        return
    how = "offline" if offline else wandb_configured()
    if how is None and mode == "auto":
        _said.once(
            "no-config",
            "W&B is not configured (no WANDB_API_KEY, no `wandb login`, WANDB_MODE is not "
            "offline), so the run is kept locally only; `expertrack sync` can mirror it later",
        )
        return
    launch(run_id, store_path, {"WANDB_MODE": "offline"} if offline else None)
    where = "offline run directories" if how in ("offline", "settings") else "W&B"
    _said.once(
        f"started-{run_id}",
        f"mirroring run {run_id} to {where} from a background process; `expertrack show {run_id}` tells how far it got",
    )


def launch(run_id: str, store_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m expertrack.mirror.follower`` for one run, detached, its output in a log file."""
    from expertrack.followers import spawn
    from expertrack.mirror.locks import mirror_dir

    log_path = mirror_dir(store_path) / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in run_id)}.log"
    # the follower lowers its own scheduling weight (follower.NICE); its output goes to its log file
    with open(log_path, "ab") as log:
        return spawn(
            "expertrack.mirror.follower",
            store_path,
            run_id,
            ["--parent-pid", str(os.getpid())],
            env=extra_env,
            output=log,
            errors=log,
        )
