"""``init(ranks="all")``: one run that every rank of a distributed job writes (issue 15; docs/distributed.md).

Every rank opens its node's store with its own writer. The rules, so that the ranks never fight over one row:
- **One run id for all ranks.** An explicit ``init(id=...)``; else, when a ``torch.distributed`` process group
  exists, rank 0's new id sent to the others (``broadcast_object_list``, once, inside ``init()``, which every rank
  calls anyway); else an id derived from the launcher's job id (``TORCHELASTIC_RUN_ID``, ``SLURM_JOB_ID``), the
  same on every rank. Without any of them the ranks cannot agree, and rank 0 alone records (said once).
- **Points.** Each rank's keys are its own series (``keys.rank``), so nothing is mangled into metric names.
- **The run's row is rank 0's**: project, name, config, summary, environment and state. The run is finished when
  rank 0 finishes. A rank that starts before rank 0 has made the row makes a placeholder row (no pid), which rank
  0's insert then fills in (``Store.create_run(..., claim=True)``; never an "id already exists" error).
- **Each rank's own state** is a row of ``run_ranks`` (node, pid, heartbeat, state, end), so a rank killed with
  SIGKILL shows as crashed there while the run goes on with the others.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
from typing import Any

from expertrack.ranks import RankInfo
from expertrack.store import Store

_JOB_VARIABLES = ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID")
_calls = itertools.count()  # init() calls in this process: every rank makes the same calls, in the same order


def shared_id(run_id: str | None, where: RankInfo, project: str, new_id: str) -> tuple[str | None, str]:
    """The id every rank uses for this run and where it came from (``"init"``, ``"broadcast"``, the job variable's
    name), or (None, why) when the ranks have no way to agree on one. ``new_id`` is rank 0's id when it makes one.

    Every rank must call this (it may be a collective), as every rank calls ``init()``.
    """
    call = next(_calls)
    if run_id:
        return run_id, "init"
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        box: list[Any] = [new_id if where.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return str(box[0]), "broadcast"
    for name in _JOB_VARIABLES:
        job = os.environ.get(name, "").strip()
        if job and job != "none":  # torchrun's default rendezvous id is the literal "none", shared by every job
            digest = hashlib.sha256(f"{name}={job}/{project}/{call}".encode()).hexdigest()
            return "j" + digest[:11], name
    return None, "no process group, no TORCHELASTIC_RUN_ID or SLURM_JOB_ID, and no init(id=...)"


def placeholder(store: Store, run_id: str) -> bool:
    """Whether the run's row was made by another rank, waiting for rank 0 to fill it in."""
    return store.rank_placeholder(run_id)


def wrote_before(store: Store, run_id: str, rank: int) -> bool:
    """Whether ``rank`` already has a part in the stored run of that id (a second job reusing the id, or a resume)."""
    return store.rank_wrote_before(run_id, rank)


def join(store: Store, run_id: str, rank: int, project: str) -> int:
    """A rank other than 0 joins the run: its row made as a placeholder when rank 0 has not made it yet, and its
    own ``run_ranks`` row. Returns the step after this rank's own last (0 unless it resumes): rank 0 may have
    logged already, and its steps must not shift this rank's."""
    store.join_rank(run_id, rank, project)
    last = [store.read_scalars(run_id, key, rank=rank)[0][-1:] for key in store.scalar_keys(run_id, rank)]
    steps = [int(s[0]) for s in last if len(s)] + [
        step for key in store.array_keys(run_id, rank) for step in store.array_steps(run_id, key, rank)[-1:]
    ]
    return max(steps) + 1 if steps else 0
