"""One training run of the demo: a model, a budget, a seed, and everything it logs to expertrack.

The three variants share data, seed, initialisation and budget; they differ only in the model's MLP and in
the auxiliary losses added to the language-model loss:

===========  ==========  ======================  =========
variant      MLP         load-balancing loss     z-loss
===========  ==========  ======================  =========
dense        dense       -                       -
moe          8 experts   ``lb_coef`` (0.01)      ``z_coef`` (0.001)
moe-no-lb    8 experts   0                       ``z_coef`` (0.001)
===========  ==========  ======================  =========

The no-LB run keeps the z-loss so that the ablation removes exactly one thing: the load-balancing term.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from expertrack import moe
from expertrack.demo.corpus import Corpus, get_batch
from expertrack.demo.model import GPT, ModelConfig, count_params

VARIANTS = ("dense", "moe", "moe-no-lb")
VAL_SEED = 10_000


@dataclass
class TrainConfig:
    steps: int = 300  # optimizer steps per run
    per_domain: int = 8  # sequences per domain in every batch (batch = per_domain * domains)
    lr: float = 3e-3  # peak learning rate (AdamW), reached after `warmup` steps, cosine decay to lr/10
    warmup: int = 30
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    lb_coef: float = 0.01  # Switch Transformer's alpha (Fedus et al. 2021, eq. 4)
    z_coef: float = 0.001  # ST-MoE's router z-loss weight (Zoph et al. 2022, eq. 5)
    eval_every: int = 50  # steps between evaluations (and always at the last step)
    eval_batches: int = 4  # validation batches per evaluation, fixed windows, each mixing every domain
    stats_every: int = 10  # K: router statistics are accumulated over K steps, then logged
    seed: int = 0
    device: str = "cpu"
    model: ModelConfig = field(default_factory=ModelConfig)


@dataclass
class RunResult:
    """What the results table needs from one finished run."""

    variant: str
    seed: int
    run_id: str | None
    run_name: str
    eval_loss: dict[str, float]  # domain -> last eval loss
    train_loss_first: float
    train_loss_last: float
    balance: dict[str, float]  # moe/maxvio, moe/load_entropy_norm ... of the last stats window (MoE only)
    affinity: np.ndarray | None  # [L, E, D] counts of the last stats window (MoE only)
    params: dict[str, int]
    seconds: float  # wall clock
    cpu_seconds: float  # CPU time of this process (all threads): a fair measure on a busy machine


def model_config(variant: str, base: ModelConfig) -> ModelConfig:
    """``base`` with ``moe`` set for the variant."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    return ModelConfig(**{**asdict(base), "moe": variant != "dense"})


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak (as in nanoGPT)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def evaluate(model: GPT, batches: list[tuple[torch.Tensor, ...]], names: list[str]) -> dict[str, float]:
    """``eval/loss``, ``eval/loss/<domain>`` and ``eval/ppl/<domain>`` over fixed validation batches."""
    model.eval()
    acc = moe.DomainLoss(names)
    for x, y, d in batches:
        logits = model(x)  # [B, T, 256]
        acc.update(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none"), d)
    model.train()
    out = acc.eval_metrics()
    # Every domain has the same number of tokens in the eval batches, so this is also the token mean.
    out["eval/loss"] = float(np.mean([out[f"eval/loss/{n}"] for n in names]))
    return out


def _batches(corpus: Corpus, split: str, n: int, cfg: TrainConfig, seed: int) -> list[tuple[torch.Tensor, ...]]:
    gen = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, y, d = get_batch(corpus, split, cfg.per_domain, cfg.model.block_size, gen)
        out.append(tuple(torch.from_numpy(a).to(cfg.device) for a in (x, y, d)))
    return out


def run_config(variant: str, cfg: TrainConfig, corpus: Corpus) -> dict[str, Any]:
    """The config stored with the run: the full training and model config, the seed, and the variant flags."""
    mcfg = model_config(variant, cfg.model)
    conf = asdict(cfg)
    conf["model_config"] = conf.pop("model")
    conf["model_config"]["moe"] = mcfg.moe
    conf.update(
        variant=variant,
        model="dense" if variant == "dense" else "moe",
        load_balancing=variant == "moe",
        lb_coef=cfg.lb_coef if variant == "moe" else 0.0,
        z_coef=cfg.z_coef if variant != "dense" else 0.0,
        domains=corpus.names,
        corpus={"fingerprint": corpus.fingerprint(), "sizes": corpus.sizes()},
        batch_size=cfg.per_domain * len(corpus.domains),
        block_size=cfg.model.block_size,
        tokens_per_step=cfg.per_domain * len(corpus.domains) * cfg.model.block_size,
    )
    if variant != "dense":
        conf["num_experts"] = mcfg.n_experts
        conf["top_k"] = mcfg.top_k
    return conf


def _step(
    model: GPT,
    opt: torch.optim.Optimizer,
    watcher: moe.Watcher | None,
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    names: list[str],
    cfg: TrainConfig,
    lb_coef: float,
    z_coef: float,
) -> dict[str, Any]:
    """One optimizer step on one mixed batch; returns the step's ``train/*`` metrics."""
    x, y, d = batch
    with watcher.batch(domain_ids=d) if watcher is not None else contextlib.nullcontext():
        logits = model(x)  # [B, T, 256]; the watcher sees each router's logits and the rows' domains
    token_loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")  # [B*T]
    loss = token_loss.mean()
    metrics: dict[str, Any] = {"train/loss": loss.item()}
    if watcher is not None:
        router_logits = model.router_logits()  # L x [B*T, E]
        lb = moe.load_balancing_loss(router_logits, top_k=cfg.model.top_k)  # 1.0 at perfect balance
        z = moe.router_z_loss(router_logits)
        loss = loss + lb_coef * lb + z_coef * z
        metrics.update({"train/lb_loss": lb.item(), "train/z_loss": z.item()})
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    metrics.update(moe.train_domain_loss(token_loss, d, names))
    return metrics


def train(
    variant: str,
    corpus: Corpus,
    cfg: TrainConfig,
    run: Any,
    on_step: Callable[[int, float], None] | None = None,
) -> RunResult:
    """Train one variant for ``cfg.steps`` steps, logging to ``run`` (an ``expertrack`` Run)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)  # same seed -> same initial weights for moe and moe-no-lb
    model = GPT(model_config(variant, cfg.model)).to(cfg.device)
    names = corpus.names
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    gen = np.random.default_rng(cfg.seed)  # same seed -> same batches in every variant
    # The validation windows do not depend on the seed, so eval numbers of different seeds are comparable.
    val = _batches(corpus, "val", cfg.eval_batches, cfg, seed=VAL_SEED)
    lb_coef = cfg.lb_coef if variant == "moe" else 0.0
    z_coef = cfg.z_coef if variant != "dense" else 0.0
    # Router statistics: forward hooks on every `router` Linear feed a RouterStats (expertrack.moe.watch).
    watcher = moe.watch(model, domains=names) if variant != "dense" else None
    affinity: np.ndarray | None = None
    balance: dict[str, float] = {}
    first = last = float("nan")
    eval_out: dict[str, float] = {}
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = get_batch(corpus, "train", cfg.per_domain, cfg.model.block_size, gen)
        x, y, d = (torch.from_numpy(a).to(cfg.device) for a in batch)  # [B, T], [B, T], [B]
        metrics = _step(model, opt, watcher, (x, y, d), names, cfg, lb_coef, z_coef)
        metrics["lr"] = opt.param_groups[0]["lr"]
        run.log(metrics, step=step)
        if watcher is not None and (step + 1) % cfg.stats_every == 0:
            logged = watcher.log_to(run, step)  # moe/* scalars and arrays of the last K steps
            balance = {k: float(v) for k, v in logged.items() if isinstance(v, float)}
            affinity = np.asarray(logged["moe/affinity"], dtype=np.int64)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            with watcher.paused() if watcher is not None else contextlib.nullcontext():
                eval_out = evaluate(model, val, names)
            run.log(eval_out, step=step)
        last = metrics["train/loss"]
        if step == 0:
            first = last
        if on_step is not None:
            on_step(step, last)
    if watcher is not None:
        watcher.detach()

    return RunResult(
        variant=variant,
        seed=cfg.seed,
        run_id=getattr(run, "id", None),
        run_name=getattr(run, "name", variant),
        eval_loss={n: eval_out[f"eval/loss/{n}"] for n in names},
        train_loss_first=first,
        train_loss_last=last,
        balance=balance,
        affinity=affinity,
        params=count_params(model),
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu_started,
    )
