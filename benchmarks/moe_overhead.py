"""Training-step overhead of expertrack.moe: watch() + RouterStats (log_to every 10 steps) vs no tracking.

A small MoE transformer (8 experts, top-2) trains on random tokens; steps with and without the watcher alternate
in the same process (plain, watched, watched, plain, so drift in machine load falls on both sides), and the table
reports time per step (forward + backward + optimizer) and the overhead, as wall-clock time and as the process's
CPU time (which a busy, shared machine disturbs less). Attaching and detaching the hooks happen between steps and
are not timed; log_to(), every 10th watched step, is.

    python benchmarks/moe_overhead.py                 # CPU, one thread, under a minute
    python benchmarks/moe_overhead.py --device cuda   # on a GPU (each step ends with a synchronize)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from expertrack.demo.model import GPT, ModelConfig
from expertrack.moe import RouterStats, watch


class Recorder:
    """Stands in for a run: keeps what is logged (the store's cost is benchmarked elsewhere)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.logged = 0

    def log(self, data: dict[str, Any], step: int) -> None:
        self.logged += 1


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, batch: Any, watcher: Any, log_at: int | None, device: str
) -> tuple[float, float]:
    """One forward + backward + optimizer step (plus log_to when ``log_at`` is a step); (wall, CPU) seconds."""
    ids, domains = batch
    start, start_cpu = time.perf_counter(), time.process_time()
    if watcher is not None:
        watcher.set_domains(domains)
    logits = model(ids[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if watcher is not None and log_at is not None:
        watcher.log_to(Recorder(), log_at)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - start_cpu


def interleaved(
    model: nn.Module, opt: torch.optim.Optimizer, batches: list[Any], args: Any, num_groups: int, budget_s: float
) -> list[Any]:
    """Steps in groups of four, plain-watched-watched-plain, so both modes see the same machine conditions.

    The watcher is attached before and detached after each watched step, outside the timed region; one
    RouterStats collects every watched step, and log_to runs (timed) on every ``log_every``-th watched step.
    Stops early (after at least 5 groups) once ``budget_s`` seconds have passed, so a busy machine cannot turn
    the default run into a long one. Returns one (plain wall, watched wall, plain CPU, watched CPU) tuple of
    summed seconds per group.
    """
    deadline = time.perf_counter() + budget_s
    stats = RouterStats(args.experts, args.top_k, domains=["code", "math", "prose"])
    groups, watched_steps = [], 0
    for g in range(num_groups):
        if g >= 5 and time.perf_counter() > deadline:
            break
        sums = {False: [0.0, 0.0], True: [0.0, 0.0]}
        for i, mode in enumerate((False, True, True, False)):
            batch = batches[(4 * g + i) % len(batches)]
            watcher = watch(model, stats=stats) if mode else None
            log_at = watched_steps + 1 if mode and (watched_steps + 1) % args.log_every == 0 else None
            wall, cpu = train_step(model, opt, batch, watcher, log_at, args.device)
            if watcher is not None:
                watcher.detach()
                watched_steps += 1
            sums[mode][0] += wall
            sums[mode][1] += cpu
        groups.append((sums[False][0], sums[True][0], sums[False][1], sums[True][1]))
    return groups


def update_cost(args: Any, device: torch.device) -> tuple[float, float]:
    """Wall-clock and CPU microseconds per RouterStats.update() on logits shaped like the model's (all layers)."""
    tokens = args.batch * (args.seq - 1)
    logits = [torch.randn(tokens, args.experts, device=device) for _ in range(args.layers)]
    domains = torch.randint(0, 3, (args.batch,), device=device)
    stats = RouterStats(args.experts, args.top_k)
    for _ in range(5):
        stats.update(logits, domain_ids=domains)
    reps = 50
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(reps):
        stats.update(logits, domain_ids=domains)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps * 1e6, (time.process_time() - start_cpu) / reps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--groups", type=int, default=40, help="groups of 4 timed steps (2 plain, 2 watched)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; 1 keeps timings stable on a shared machine, 0 = torch's choice",
    )
    parser.add_argument("--budget", type=float, default=45.0, help="stop adding groups after this many seconds")
    parser.add_argument("--log-every", type=int, default=10, help="log_to every this many watched steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=65)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # the reference experiment's model (nanoGPT-shaped, an MoE MLP in every block), at the sizes asked for
    config = ModelConfig(
        block_size=args.seq,
        n_layer=args.layers,
        n_head=4,
        n_embd=args.dim,
        moe=True,
        n_experts=args.experts,
        top_k=args.top_k,
    )
    model = GPT(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = [
        (
            torch.randint(0, config.vocab_size, (args.batch, args.seq), device=device),
            torch.randint(0, 3, (args.batch,), device=device),
        )
        for _ in range(8)
    ]
    interleaved(model, opt, batches, args, num_groups=2, budget_s=math.inf)  # warm-up: both paths, caches
    report(args, device, interleaved(model, opt, batches, args, num_groups=args.groups, budget_s=args.budget))


def report(args: Any, device: torch.device, groups: list[Any]) -> None:
    tokens = args.batch * (args.seq - 1)
    print(
        f"MoE LM: {args.layers} layers, d={args.dim}, {args.experts} experts, top-{args.top_k}, "
        f"{tokens} tokens/step, device={device}, torch threads={torch.get_num_threads()}; "
        f"{len(groups)} groups of 4 interleaved steps (plain, watched, watched, plain), log_to every "
        f"{args.log_every} watched steps"
    )
    print(f"{'clock':<6}{'mode':<30}{'steps':>6}{'median ms':>11}{'mean ms':>10}  {'overhead, median of groups'}")
    for clock, plain_at in (("wall", 0), ("cpu", 2)):
        plain = [g[plain_at] / 2 for g in groups]
        watched = [g[plain_at + 1] / 2 for g in groups]
        ratio = statistics.median(w / p for w, p in zip(watched, plain))
        for name, values in (("no tracking", plain), ("watch + RouterStats", watched)):
            shown = f"{ratio:.4f} ({(ratio - 1) * 100:+.2f}%)" if values is watched else ""
            median, mean = statistics.median(values) * 1e3, statistics.fmean(values) * 1e3
            print(f"{clock:<6}{name:<30}{2 * len(values):>6}{median:>11.2f}{mean:>10.2f}  {shown}")
    wall_us, cpu_us = update_cost(args, device)
    on_cpu = device.type == "cpu"  # compare like with like: CPU time on CPU, wall-clock time on a GPU
    plain_step = statistics.median(g[2 if on_cpu else 0] / 2 for g in groups)
    share = (cpu_us if on_cpu else wall_us) * 1e-6 / plain_step
    print(
        f"RouterStats.update() alone: {wall_us:.0f} us wall, {cpu_us:.0f} us CPU per call ({args.layers} layers), "
        f"{share * 100:.2f}% of a plain step"
    )


if __name__ == "__main__":
    main()
