"""Code inside the ranks of the ranks="all" tests (importable, so torch.multiprocessing can spawn it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch.distributed as dist

import expertrack
from tests.distributed.workers import start_group

STEPS = 5


def _job_environment(directory: str) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        os.environ.pop(name, None)
    os.environ["EXPERTRACK_DIR"] = directory
    os.environ["EXPERTRACK_MIRROR"] = "off"


def every_rank_logs(rank: int, world_size: int, rendezvous: str, directory: str) -> None:
    """Each rank logs its own loss (rank * 10 + step), its own config and summary; only rank 0's row may stick."""
    _job_environment(directory)
    start_group(rank, world_size, rendezvous)
    run = expertrack.init(project="ddp", config={"lr": 0.1, "seen_by": rank}, ranks="all", system_metrics=False)
    for step in range(STEPS):
        run.log({"loss": rank * 10.0 + step, f"only_rank_{rank}": float(step)})
    run.summary["best"] = float(rank)
    run.config.update({"last_writer": rank})
    dist.barrier()  # rank 0 finishes first below, the others after it: rank 0's end must not be overwritten
    if rank == 0:
        run.finish()
    dist.barrier()
    if rank != 0:
        run.finish(exit_code=3)  # a rank that fails after rank 0 finished: its own state, not the run's
    dist.barrier()
    dist.destroy_process_group()


def logs_until_killed(rank: int, world_size: int, rendezvous: str, directory: str, out: str) -> None:
    """Both ranks log a point every 5 ms with no collective after init(): rank 1 until it is killed (its progress
    written to ``out`` with the wall time of each point), rank 0 until the test says it may finish."""
    _job_environment(directory)
    start_group(rank, world_size, rendezvous)
    run = expertrack.init(project="ddp", ranks="all", system_metrics=False)
    progress = Path(out) / f"rank{rank}.log"
    go = Path(out) / "finish"
    step = 0
    with progress.open("a") as written:
        while rank != 0 or not go.exists():
            run.log({"loss": float(step)}, step=step)
            written.write(f"{step} {time.time()}\n")
            written.flush()
            step += 1
            time.sleep(0.005)
        for extra in range(step, step + 10):  # rank 0 goes on after rank 1 died, then finishes the run
            run.log({"loss": float(extra)}, step=extra)
    run.finish()
    Path(out, "rank0.done").write_text(str(step + 10))
