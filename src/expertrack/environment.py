"""What a run was launched from: command line, code version, machine and software, captured once at ``init``.

``collect_environment`` runs on the writer thread, so it may spend tens of milliseconds (it starts a few
``git`` processes) but it never raises: each part is guarded, and a part that fails is left out and named
under ``"capture_errors"``. Secrets never reach the store: environment variables and the command line go through
the one redaction rule of ``expertrack.redact`` (re-exported here).
"""

from __future__ import annotations

import getpass
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

from expertrack.redact import REDACTED, is_secret_name, redact_argv, redact_env, redact_url_credentials

__all__ = ["REDACTED", "collect_environment", "is_secret_name", "redact_argv", "redact_env", "redact_url_credentials"]


# Reported when installed, looked up by distribution name only: importing them here would cost seconds.
PACKAGES = (
    "expertrack",
    "torch",
    "numpy",
    "pandas",
    "transformers",
    "tokenizers",
    "datasets",
    "accelerate",
    "deepspeed",
    "triton",
    "jax",
    "wandb",
)

GIT_TIMEOUT_S = 2.0


def _git(args: list[str], cwd: str) -> str | None:
    """Output of one git command, or None outside a repository, without git, or past the timeout."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            # A repository owned by another user would make git prompt or fail noisily; keep it quiet.
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_info(cwd: str) -> dict[str, Any] | None:
    """Commit, branch, root, dirty flag and remote of the repository containing ``cwd``, or None."""
    head = _git(["rev-parse", "HEAD", "--abbrev-ref", "HEAD", "--show-toplevel"], cwd)
    if head is None:
        return None  # not a repository, or one without commits yet
    lines = head.splitlines()
    if len(lines) < 3:
        return None
    info: dict[str, Any] = {"commit": lines[0], "branch": lines[1], "root": lines[2]}
    # Only tracked files count: untracked files are often outputs, and listing them is slow in big trees.
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    if status is not None:
        info["dirty"] = bool(status.strip())
    remote = _git(["config", "--get", "remote.origin.url"], cwd)
    if remote:
        info["remote"] = redact_url_credentials(remote.strip())
    return info


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Versions of ``names`` read from their metadata without importing them; missing ones are skipped."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def gpu_names() -> list[str] | None:
    """Names of the visible CUDA devices, only when the program already imported torch, else None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return [str(torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]


def _user() -> str:
    return getpass.getuser()


def _platform() -> str:
    return platform.platform()


def collect_environment(argv: list[str] | None = None) -> dict[str, Any]:
    """Everything ``expertrack show`` reports about where a run came from, as a JSON-ready dict.

    ``argv`` defaults to ``sys.argv``. Keys: ``command``, ``executable``, ``cwd``, ``git`` (absent outside
    a repository), ``host``, ``user``, ``pid``, ``platform``, ``python``, ``packages``, ``gpus`` (only when
    torch is imported and sees CUDA), ``env``; ``capture_errors`` names the parts that failed, if any.
    """
    env: dict[str, Any] = {}
    errors: list[str] = []
    cwd = _guarded("cwd", os.getcwd, errors)
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("command", lambda: redact_argv(list(sys.argv if argv is None else argv))),
        ("executable", lambda: sys.executable),
        ("cwd", lambda: cwd),
        ("git", lambda: git_info(cwd) if cwd else None),
        ("host", socket.gethostname),
        ("user", _user),
        ("pid", os.getpid),
        ("platform", _platform),
        ("python", lambda: platform.python_version()),
        ("packages", package_versions),
        ("gpus", gpu_names),
        ("env", lambda: redact_env(dict(os.environ))),
    ]
    for name, part in parts:
        value = _guarded(name, part, errors)
        if value is not None:
            env[name] = value
    if errors:
        env["capture_errors"] = errors
    return env


def _guarded(name: str, part: Callable[[], Any], errors: list[str]) -> Any:
    """Call one capture part; a failure costs that part only (this runs on the writer thread, rule 1)."""
    try:
        return part()
    except Exception:  # the tracker's outer boundary: capture must never break init
        errors.append(name)
        return None
