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


# ---- RouterStats reduced over ranks -----------------------------------------------------------------------------

LAYERS, TOKENS, EXPERTS, TOP_K, DOMAINS = 3, 24, 8, 2, ["code", "math", "prose"]
STEPS_PER_WINDOW, WINDOWS = 3, 2
CONVENTIONS = ("default", "gshard")  # gshard counts first choices only: the per-pass rows carry a third grid


def batch(rank: int, step: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """One rank's forward pass at ``step``: per-layer logits [T, E], domain ids [T] and a padding mask [T]."""
    gen = torch.Generator().manual_seed(7919 * step + rank)
    domains = torch.randint(-1, len(DOMAINS), (TOKENS,), generator=gen)  # -1: a token of no known domain
    mask = torch.rand(TOKENS, generator=gen) > 0.2
    return seeded_logits(rank, step, LAYERS, TOKENS, EXPERTS), domains, mask


def router_stats_rank(rank: int, world_size: int, rendezvous: str, out_dir: str) -> None:
    """Every rank updates RouterStats reduced over WORLD and logs each window; each rank saves what it logged."""
    from expertrack.moe import RouterStats
    from tests.moe.helpers import Recorder

    start_group(rank, world_size, rendezvous)
    stats = {
        c: RouterStats(EXPERTS, TOP_K, domains=DOMAINS, lb_convention=c, process_group=dist.group.WORLD)
        for c in CONVENTIONS
    }
    recorders = {c: Recorder() for c in CONVENTIONS}
    for window in range(WINDOWS):
        for step in range(window * STEPS_PER_WINDOW, (window + 1) * STEPS_PER_WINDOW):
            logits, domains, mask = batch(rank, step)
            for s in stats.values():
                s.update(logits, domain_ids=domains, mask=mask)
        for c, s in stats.items():
            s.log_to(recorders[c], step=window)
    torch.save({c: r.logged for c, r in recorders.items()}, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def no_sync_rank(rank: int, world_size: int, rendezvous: str, out_dir: str) -> None:
    """update() of a reduced RouterStats with every host read forbidden; then log_to, allowed again, still works."""
    from expertrack.moe import RouterStats
    from tests.moe.helpers import Recorder

    start_group(rank, world_size, rendezvous)
    stats = RouterStats(EXPERTS, TOP_K, domains=DOMAINS, lb_convention="gshard", process_group=dist.group.WORLD)
    saved = {}

    def forbidden(self: torch.Tensor, *args: object, **kwargs: object) -> None:
        raise AssertionError("host sync inside RouterStats.update()")

    for method in ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        saved[method] = getattr(torch.Tensor, method)
        setattr(torch.Tensor, method, forbidden)
    try:
        for step in range(4):
            logits, domains, mask = batch(rank, step)
            stats.update(logits, domain_ids=domains, mask=mask)
            stats.update(logits)
    finally:
        for method, original in saved.items():
            setattr(torch.Tensor, method, original)
    recorder = Recorder()
    stats.log_to(recorder, step=0)
    torch.save(recorder.logged, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def watch_ids(rank: int, step: int) -> torch.Tensor:
    """Token ids a rank feeds TinyMoE at ``step`` (3 sequences of 5 tokens)."""
    return torch.randint(0, 32, (3, 5), generator=torch.Generator().manual_seed(31 * step + rank))


def watch_rank(rank: int, world_size: int, rendezvous: str, out_dir: str) -> None:
    """watch(model, process_group=WORLD) on the same TinyMoE in every rank, each with its own tokens."""
    from expertrack.moe import watch
    from tests.moe.helpers import Recorder, TinyMoE

    start_group(rank, world_size, rendezvous)
    torch.manual_seed(0)
    model = TinyMoE(num_experts=4, top_k=2, depth=2)
    recorder = Recorder()
    with watch(model, domains=None, process_group=dist.group.WORLD) as watcher, torch.no_grad():
        for step in range(2):
            model(watch_ids(rank, step))
        watcher.log_to(recorder, step=1)
    torch.save(recorder.logged, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()
