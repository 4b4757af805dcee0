"""Helpers for the integration tests: run a tiny training script (tests/integrations/trainers/) in a child
process, natively or through its W&B path under the ``import wandb`` stand-in, and read back what it stored.

Each training runs once per module (a fixture) and several tests check it: the frameworks take seconds to import.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import expertrack

TRAINERS = Path(__file__).resolve().parent / "trainers"
EXPERTRACK = str(Path(sys.executable).with_name("expertrack"))


def stand_in_variable_installed() -> bool:
    """Whether the ``.pth`` line that makes ``EXPERTRACK_AS_WANDB=1`` work is installed in this environment."""
    return any((Path(d) / "expertrack_as_wandb.pth").exists() for d in site.getsitepackages())


def child_env(workdir: Path, **extra: str) -> dict[str, str]:
    """An environment that never reaches the network and keeps temporary files below ``workdir``."""
    if extra.get("EXPERTRACK_AS_WANDB"):
        assert stand_in_variable_installed(), (
            "expertrack_as_wandb.pth is not installed in this environment: reinstall expertrack "
            "(`pip install -e .`, or scripts/setup-venv.sh) so that EXPERTRACK_AS_WANDB=1 works"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "EXPERTRACK_"))}
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(
        TMPDIR=str(workdir / "tmp"),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(workdir / "hf"),
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        EXPERTRACK_MIRROR="off",
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def check(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The process, after asserting it succeeded (its output shown when not)."""
    output = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"exit {proc.returncode}\n{output}"
    return proc


def train_natively(script: str, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT native ARGS`` in ``workdir``, runs going to ``workdir/runs`` ($EXPERTRACK_DIR)."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = child_env(workdir, EXPERTRACK_DIR=str(workdir / "runs"))
    command = [sys.executable, str(TRAINERS / script), "native", *args]
    return check(subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300))


def train_as_wandb(script: str, workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``expertrack run --as-wandb --dir chosen -- python SCRIPT wandb ARGS`` in ``workdir``: the script's W&B code
    path, unchanged; runs must go to ``workdir/chosen`` whatever ``dir`` the framework gives ``wandb.init``."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [EXPERTRACK, "run", "--as-wandb", "--dir", "chosen", "--", sys.executable, str(TRAINERS / script)]
    proc = subprocess.run(
        [*command, "wandb", *args],
        cwd=workdir,
        env=child_env(workdir, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return check(proc)


def the_run(directory: Path) -> expertrack.ApiRun:
    """The one run stored in the tracking directory ``directory``."""
    runs = expertrack.Api(directory).runs()
    assert len(runs) == 1, [r.name for r in runs]
    return runs[0]


def series(run: expertrack.ApiRun, key: str) -> dict[int, float]:
    """``key``'s stored points as {step: value}."""
    steps, _, values = run.scalars(key)
    return dict(zip(np.asarray(steps).tolist(), np.asarray(values).tolist()))


def logged(workdir: Path) -> Any:
    """What the training script recorded of its own logging (its ``logged.json``)."""
    return json.loads((workdir / "logged.json").read_text())
