"""Code that runs inside the ranks of the distributed tests (importable, so torch.multiprocessing can spawn it)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

# An unmodified training script as a wandb user writes it: it never asks which rank it is.
UNMODIFIED_SCRIPT = """
import expertrack as wandb

run = wandb.init(project="ddp", config={"lr": 0.1})
wandb.config.update({"batch": 8})
wandb.define_metric("loss", summary="min")
for step in range(5):
    wandb.log({"loss": 1.0 / (step + 1), "step_rank_sum": step})
run.summary["best"] = 0.2
print("RUN", run.id, run.name, flush=True)
wandb.finish()
"""


def start_group(rank: int, world_size: int, rendezvous: str) -> None:
    """Join a gloo process group through a rendezvous file (no port to pick, so no port clash between tests)."""
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size)


def unmodified_script_rank(rank: int, world_size: int, rendezvous: str, directory: str) -> None:
    """A rank of a torch.multiprocessing job: the group is set up in code (no RANK variable), then the script."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        os.environ.pop(name, None)
    os.environ["EXPERTRACK_DIR"] = directory
    start_group(rank, world_size, rendezvous)
    exec(compile(UNMODIFIED_SCRIPT, "unmodified_script", "exec"), {})
    dist.barrier()  # every rank has finished its run before any process group is torn down
    dist.destroy_process_group()


def write_script(directory: Path) -> Path:
    """The unmodified script as a file, for launchers that start a file (torchrun, srun)."""
    path = directory / "train.py"
    path.write_text(UNMODIFIED_SCRIPT)
    return path


def seeded_logits(rank: int, step: int, layers: int, tokens: int, experts: int) -> list[torch.Tensor]:
    """Router logits that differ by rank and step and that any process can rebuild (for the concatenation)."""
    gen = torch.Generator().manual_seed(1000 * step + rank)
    skew = torch.linspace(0.0, 1.5 * (rank + 1), experts)  # ranks route differently, so imbalance differs
    return [torch.randn(tokens, experts, generator=gen) + skew for _ in range(layers)]
