"""The ``import wandb`` stand-in: making a training script's ``import wandb`` resolve to expertrack, on request.

The stand-in is a package named ``wandb`` in a directory of its own (``expertrack/_stand_in``), put first on the
module search path of the training process only:

* ``expertrack run --as-wandb -- CMD`` runs CMD with that directory first on ``PYTHONPATH``;
* ``EXPERTRACK_AS_WANDB=1`` in the environment does the same at interpreter start-up, for launchers that cannot
  be wrapped: a one-line ``expertrack_as_wandb.pth`` installed beside the package puts the directory first on
  ``sys.path`` (found with ``find_spec``, without importing expertrack: a start-up that pays nothing more);
* :func:`activate` does it from Python (a notebook), before the first ``import wandb``.

The W&B mirror is a separate process that needs the real wandb: :func:`without_stand_in` is the environment it
is started with, and :func:`real_wandb_importable` looks for the real package past the stand-in. What the
stand-in provides, and what it cannot honour: docs/integrations.md.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from collections.abc import Mapping
from pathlib import Path

ENV_AS_WANDB = "EXPERTRACK_AS_WANDB"
STAND_IN_DIR = Path(__file__).resolve().parent / "_stand_in"


def activate() -> None:
    """Put the stand-in first on ``sys.path``, so that a later ``import wandb`` gets expertrack (a wandb
    imported already stays the real one); what ``$EXPERTRACK_AS_WANDB`` does at start-up."""
    if not any(_is_stand_in(p) for p in sys.path):
        sys.path.insert(0, str(STAND_IN_DIR))


def deactivate() -> None:
    """Take the stand-in off ``sys.path`` (expertrack's own commands, which need the real wandb), unless a
    ``wandb`` module was already imported from it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and _is_stand_in(str(Path(getattr(wandb, "__file__", "") or ".").parent.parent)):
        return
    sys.path[:] = [p for p in sys.path if not _is_stand_in(p)]


def _is_stand_in(entry: str) -> bool:
    try:
        return Path(entry or ".").resolve() == STAND_IN_DIR
    except OSError:
        return False


def with_stand_in(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for a program whose ``import wandb`` must resolve to expertrack."""
    env = dict(environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and not _is_stand_in(p)]
    env["PYTHONPATH"] = os.pathsep.join([str(STAND_IN_DIR), *paths])
    env[ENV_AS_WANDB] = "1"
    return env


def without_stand_in(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for a process that needs the real wandb (the W&B mirror, ``expertrack sync``)."""
    env = dict(environ)
    env.pop(ENV_AS_WANDB, None)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and not _is_stand_in(p)]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


def real_wandb_importable() -> bool:
    """Whether the real wandb package can be imported, looking past the stand-in (without importing anything).

    The finders of ``sys.meta_path`` are asked in order, as ``import`` would; the path finder searches
    ``sys.path`` without the stand-in's directory.
    """
    path = [p for p in sys.path if not _is_stand_in(p)]
    path_finder = importlib.machinery.PathFinder
    try:
        for finder in sys.meta_path:
            if finder is path_finder or (isinstance(finder, type) and issubclass(finder, path_finder)):
                spec = path_finder.find_spec("wandb", path)
            else:
                find_spec = getattr(finder, "find_spec", None)
                spec = find_spec("wandb", None) if find_spec is not None else None
            if spec is not None:
                return True
    except (ImportError, ValueError):
        return False
    return False
