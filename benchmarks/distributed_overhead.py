"""Step-time overhead of expertrack in a 4-process data-parallel job (gloo on CPU): the demo's MoE model with and
without tracking, in the same processes.

Every rank runs ``expertrack.init()`` once (rank 0 records the run; the system sampler is on, at ``--interval``
seconds) and then trains in groups of four steps, plain, tracked, tracked, plain (every other group the other way
round, tracked, plain, plain, tracked), so drift in machine load and a step's place in its group fall on both
sides. A tracked step has ``expertrack.moe.watch`` hooks on the model feeding a RouterStats reduced over the
process group (``log_to`` every ``--log-every`` tracked steps: one all_reduce, then ``run.log`` on rank 0) and
logs the loss; a plain step does neither. The sampler runs through both modes, so its cost is reported on its
own row: the CPU time its thread spent per sample, and what that is at the default 10 s interval as a share of
one core. Step times are rank 0's (DDP's gradient all-reduce makes every rank wait for the slowest), as wall-clock
time and as rank 0's process CPU time (its writer and sampler threads included), which a busy machine disturbs
less.
``--null`` makes the "tracked" steps plain too: the overhead it prints is the noise floor of this machine now.

    python benchmarks/distributed_overhead.py              # 4 ranks, about a minute on 2 busy cores
    python benchmarks/distributed_overhead.py --groups 60  # longer, steadier
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import expertrack
from expertrack.demo.model import GPT, ModelConfig
from expertrack.moe import RouterStats, watch


def rank_main(rank: int, args: argparse.Namespace, scratch: str) -> None:
    """One rank: join the group, build the model under DDP, time interleaved plain and tracked steps."""
    os.environ["EXPERTRACK_DIR"] = str(Path(scratch) / "runs")
    os.environ["EXPERTRACK_MIRROR"] = "off"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{scratch}/rdzv", rank=rank, world_size=args.ranks)
    torch.manual_seed(0)
    config = ModelConfig(block_size=args.seq, n_layer=args.layers, n_head=2, n_embd=args.dim, moe=True)
    model = DistributedDataParallel(GPT(config))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(rank)
    batches = [
        (torch.randint(0, 256, (args.batch, args.seq + 1), generator=gen), torch.randint(0, 3, (args.batch,)))
        for _ in range(8)
    ]
    run = expertrack.init(project="bench-distributed", system_metrics=args.interval)
    stats = RouterStats(config.n_experts, config.top_k, process_group=dist.group.WORLD)
    times: dict[str, list[float]] = {"plain": [], "tracked": [], "plain_cpu": [], "tracked_cpu": []}
    log_costs: list[float] = []
    tracked = 0
    for group in range(args.groups + 2):  # the first two groups warm up both paths and are not kept
        order = ("plain", "tracked", "tracked", "plain") if group % 2 == 0 else ("tracked", "plain", "plain", "tracked")
        for i, mode in enumerate(order):
            ids, domains = batches[(4 * group + i) % len(batches)]
            watcher = watch(model.module, stats=stats) if mode == "tracked" and not args.null else None
            dist.barrier()  # every rank starts the step together, so rank 0 times the step, not a straggler
            start, start_cpu = time.perf_counter(), time.process_time()
            if watcher is not None:
                watcher.set_domains(domains)
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if mode == "tracked" and not args.null:
                tracked += 1
                run.log({"train/loss": loss.detach()}, step=tracked)
                if tracked % args.log_every == 0 and watcher is not None:
                    log_start = time.perf_counter()
                    watcher.log_to(run, step=tracked)
                    log_costs.append(time.perf_counter() - log_start)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            if watcher is not None:
                watcher.detach()
            if group >= 2:
                times[mode].append(elapsed)
                times[f"{mode}_cpu"].append(cpu)
    run.finish()
    sampler_cpu = _sampler_cost(args) if rank == 0 else None
    if rank == 0:
        out = {"times": times, "log_costs": log_costs, "sampler": sampler_cpu}
        (Path(scratch) / "rank0.json").write_text(json.dumps(out))
    dist.barrier()
    dist.destroy_process_group()


class _Sink:
    """Takes a sampler's rows and drops them: the run's own store write is measured by the tracked steps."""

    def _log_series(self, values: dict[str, float], index: int, timestamp: float) -> None:
        pass


def _sampler_cost(args: argparse.Namespace) -> dict[str, float]:
    """CPU seconds per sample of a sampler taking a sample every 20 ms, measured on its own thread's clock."""
    from expertrack.system import SystemSampler

    sampler = SystemSampler(_Sink(), interval=0.02).start()  # type: ignore[arg-type]
    time.sleep(args.sampler_seconds)
    sampler.stop()
    return {"samples": sampler.samples, "cpu_s": sampler.cpu_seconds}


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    print(
        f"{args.ranks} ranks (gloo, CPU, 1 torch thread each), demo MoE model: {args.layers} layers, d={args.dim}, "
        f"8 experts top-2, batch {args.batch} x {args.seq} per rank; {args.groups} groups of 4 interleaved steps; "
        f"log_to (one all_reduce) every {args.log_every} tracked steps; system sampler every {args.interval} s"
    )
    print(f"{'clock':<6}{'mode':<34}{'steps':>6}{'median ms':>11}{'mean ms':>10}  overhead (median of group ratios)")
    label = "also no tracking (--null)" if args.null else "expertrack (log + RouterStats)"
    for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
        plain, tracked = result["times"]["plain" + suffix], result["times"]["tracked" + suffix]
        # each group holds 2 plain and 2 tracked steps: compare their sums within the group
        ratio = statistics.median(
            (tracked[2 * g] + tracked[2 * g + 1]) / (plain[2 * g] + plain[2 * g + 1]) for g in range(args.groups)
        )
        for name, values in (("no tracking", plain), (label, tracked)):
            shown = f"{ratio:.4f} ({(ratio - 1) * 100:+.2f}%)" if values is tracked else ""
            print(
                f"{clock:<6}{name:<34}{len(values):>6}{statistics.median(values) * 1e3:>11.2f}"
                f"{statistics.fmean(values) * 1e3:>10.2f}  {shown}"
            )
    costs = result["log_costs"]
    if costs:
        print(
            f"{'wall':<6}{'log_to (all_reduce + run.log)':<34}{len(costs):>6}{statistics.median(costs) * 1e3:>11.2f}"
            f"{statistics.fmean(costs) * 1e3:>10.2f}  (inside the tracked steps above)"
        )
    sampler = result["sampler"]
    per_sample = sampler["cpu_s"] / max(1, sampler["samples"])
    print(
        f"{'cpu':<6}{'system sampler, per sample':<34}{sampler['samples']:>6}{per_sample * 1e3:>11.3f}{'':>10}  "
        f"at 10 s: {per_sample / 10 * 100:.4f}% of one core (goal: under 1%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--groups", type=int, default=20, help="timed groups of 4 steps (2 plain, 2 tracked)")
    parser.add_argument("--log-every", type=int, default=10, help="log_to every this many tracked steps")
    parser.add_argument("--interval", type=float, default=10.0, help="system sampler interval, seconds")
    parser.add_argument("--sampler-seconds", type=float, default=2.0, help="how long the sampler cost is measured")
    parser.add_argument("--null", action="store_true", help="track nothing in the tracked steps: the noise floor")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="expertrack-bench-") as scratch:
        mp.spawn(rank_main, args=(args, scratch), nprocs=args.ranks, join=True)
        report(args, json.loads((Path(scratch) / "rank0.json").read_text()))


if __name__ == "__main__":
    main()
