"""Helpers for the mirror tests: make real W&B offline runs in a child process, and find their .wandb logs.

Each child gets its own WANDB_DIR and an environment that can never reach the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from expertrack.mirror.locks import is_held
from expertrack.mirror.state import read_state
from expertrack.paths import store_path
from expertrack.store import SQLiteStore


def offline_env(wandb_dir: Path, **extra: str) -> dict[str, str]:
    """An environment for a child that runs wandb offline, silently, writing under ``wandb_dir``."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("WANDB_"):
            del env[key]
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(wandb_dir),
        WANDB_SILENT="true",
        WANDB_DISABLE_GIT="true",
        WANDB_CONSOLE="off",
        WANDB_API_KEY="",
        WANDB_CONFIG_DIR=str(wandb_dir / ".config"),
        WANDB_CACHE_DIR=str(wandb_dir / ".cache"),
        WANDB_DATA_DIR=str(wandb_dir / ".data"),
        EXPERTRACK_MIRROR_NICE="0",  # tests check what is sent, not priorities: no starving on a busy CI machine
    )
    env.pop("WANDB_API_KEY")
    env.update(extra)
    return env


def run_wandb_script(script: str, wandb_dir: Path, timeout: float = 120) -> None:
    """Run ``script`` (Python source using ``wandb``) in a child, offline; raise if it fails."""
    wandb_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=offline_env(wandb_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"wandb script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def wandb_logs(wandb_dir: Path) -> list[Path]:
    """Every run-*.wandb file under ``wandb_dir``, oldest run directory first."""
    return sorted(wandb_dir.rglob("run-*.wandb"))


def wait_for_mirror(tracking_dir: Path, run_id: str, timeout: float = 180) -> None:
    """Until the mirror process has recorded a state and let go of the run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store_path(tracking_dir).exists():
            with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
                state = read_state(store, run_id)
            if state is not None and not is_held(store_path(tracking_dir), run_id):
                return
        time.sleep(0.3)
    log = tracking_dir / "mirror" / f"{run_id}.log"
    raise AssertionError(f"the mirror did not finish; its log:\n{log.read_text() if log.exists() else '-'}")
