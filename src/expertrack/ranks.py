"""Which process of a distributed job this is, and whether it records the run.

Launchers tell each process its rank in environment variables: torchrun sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; SLURM's ``srun`` sets ``SLURM_PROCID``, ``SLURM_LOCALID`` and ``SLURM_NTASKS``. A job started with
``torch.multiprocessing`` sets none of them, but its processes call ``torch.distributed.init_process_group``, which
we can ask once it has run. ``init(rank=..., world_size=...)`` overrides them all.

The order matters: under ``srun torchrun ...`` SLURM_PROCID numbers the nodes while RANK numbers the processes, so
torchrun's variables (and an initialised process group) come before SLURM's. By default only rank 0 records the
run (docs/distributed.md); the others get a run that accepts every call and stores nothing, so an unmodified
script under a launcher makes one run.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RANKS_MODES = ("zero", "all")


@dataclass(frozen=True)
class RankInfo:
    """This process's place in its job: ``rank`` of ``world_size``, ``local_rank`` on ``node``, and ``source``,
    where that was learnt (``"init"``, ``"torchrun"``, ``"torch.distributed"``, ``"slurm"`` or ``"single"``)."""

    rank: int
    world_size: int
    local_rank: int | None
    node: str
    source: str

    @property
    def distributed(self) -> bool:
        """True when the job has more than one process."""
        return self.world_size > 1

    def as_dict(self, ranks: str) -> dict[str, Any]:
        """What the run's environment records under ``"distributed"``."""
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "local_rank": self.local_rank,
            "node": self.node,
            "source": self.source,
            "ranks": ranks,
        }


def detect(
    rank: int | None = None, world_size: int | None = None, environ: Mapping[str, str] | None = None
) -> RankInfo:
    """This process's rank and world size: from the arguments, else torchrun's variables, else an initialised
    ``torch.distributed`` process group, else SLURM's variables, else rank 0 of 1.

    A variable that is not a whole number is ignored, with the next source used instead (a launcher never sets
    one; a hand-made environment might, and tracking must not stop training over it).
    """
    env = os.environ if environ is None else environ
    found = _from_launcher(env)
    if rank is None and world_size is None:
        return found
    # one given by hand: the other from the launcher, else the smallest job that holds the rank
    rank = found.rank if rank is None else rank
    size = world_size if world_size is not None else (found.world_size if found.source != "single" else rank + 1)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"init(): rank {rank} is not within world_size {size} (0 <= rank < world_size)")
    return RankInfo(rank, size, found.local_rank, found.node, "init")


def _from_launcher(env: Mapping[str, str]) -> RankInfo:
    node = socket.gethostname()
    local_rank = _int(env, "LOCAL_RANK")
    rank, size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    if rank is not None and size is not None and 0 <= rank < size:
        return RankInfo(rank, size, local_rank, node, "torchrun")
    group = _process_group()
    if group is not None:
        return RankInfo(group[0], group[1], local_rank, node, "torch.distributed")
    rank, size = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
    if rank is not None and size is not None and 0 <= rank < size:
        return RankInfo(rank, size, _int(env, "SLURM_LOCALID"), node, "slurm")
    return RankInfo(0, 1, None, node, "single")


def records(info: RankInfo, ranks: str | int) -> bool:
    """Whether this process writes the run: only rank 0 by default (``ranks="zero"``), the rank given as an
    int, or every rank (``"all"``: each point labelled with its rank; see expertrack.allranks)."""
    if isinstance(ranks, int) and not isinstance(ranks, bool):
        return info.rank == ranks
    if ranks == "all":
        return True
    if ranks in RANKS_MODES:
        return info.rank == 0
    raise ValueError(f"init(ranks=...) takes 'zero', 'all' or a rank number, not {ranks!r}")


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() else None


def _process_group() -> tuple[int, int] | None:
    """(rank, world size) of torch.distributed's default group, when torch is loaded and a group is set up.

    Never imports torch: a process that has not imported it has no process group."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return int(dist.get_rank()), int(dist.get_world_size())
