"""RouterStats: router metrics accumulated on the device over a window of steps, logged with one transfer.

``update()`` only launches tensor operations on the logits' device (no ``.item()``, no ``.cpu()``, no Python
branch on a tensor's value), so the training loop never waits for it. ``log_to(run, step)`` computes the window's
metrics, brings them to the host in ONE copy, logs them and starts a new window. Names and formulas:
docs/moe-metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from expertrack.moe import losses, names
from expertrack.moe._inputs import Logits, stack_logits, token_domains, token_mask
from expertrack.moe.distributed import PassSums, reduce_window
from expertrack.moe.losses import LBConvention, lb_from_sums, slot_counts, top_experts
from expertrack.moe.metrics import domain_slot_counts, entropy, load_fractions, maxvio, token_entropy


class RouterStats:
    """Accumulates router metrics per layer over many ``update()`` calls; ``log_to()`` logs and resets the window.

    ``num_layers`` is taken from the first update when not given. ``domains`` names the domain ids passed to
    ``update()`` (id i is ``domains[i]``); None or [] turns the experts x domains affinity off. ``lb_convention``
    is a preset name or an :class:`~expertrack.moe.losses.LBConvention` (default: per-layer mean, divided by k).
    ``capacity_factor`` (e.g. 1.25) also logs ``moe/drop_rate``: the share of token slots that an expert capacity
    of ``ceil(capacity_factor * k * T / E)`` per forward pass would drop.

    With ``process_group`` (a torch.distributed group, e.g. ``torch.distributed.group.WORLD``) ``compute()`` and
    ``log_to()`` sum the window over the group's ranks in one collective, so the metrics are those of the global
    batch, plus ``moe/maxvio_rank_max``; every rank must call them together (see ``expertrack.moe.distributed``).
    """

    def __init__(
        self,
        num_experts: int,
        top_k: int,
        num_layers: int | None = None,
        domains: Sequence[str] | None = names.DEFAULT_DOMAINS,
        lb_convention: str | LBConvention = "default",
        capacity_factor: float | None = None,
        process_group: Any = None,
    ) -> None:
        if num_experts < 2:
            raise ValueError(f"num_experts must be at least 2, got {num_experts}")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be between 1 and num_experts ({num_experts}), got {top_k}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.num_layers = num_layers
        self.domains = list(domains or [])
        self.lb_convention = losses.lb_convention(lb_convention)
        if capacity_factor is not None and not capacity_factor > 0:
            raise ValueError(f"capacity_factor must be greater than 0, got {capacity_factor}")
        self.capacity_factor = capacity_factor
        self._acc: dict[str, torch.Tensor] | None = None
        self._updates = 0
        self._config_recorded = False
        self.process_group = process_group
        self._passes = PassSums() if process_group is not None else None  # per-pass sums for the reduction

    @property
    def num_updates(self) -> int:
        """How many ``update()`` calls the current window holds."""
        return self._updates

    def update(
        self, router_logits: Logits, domain_ids: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> None:
        """Add one forward pass: per-layer logits [T, E] (a list, or one tensor for one layer), optional domain ids
        ([T], [batch, seq] or one per sequence [batch]) and padding mask ([T] or [batch, seq], True = real token).

        Never reads a value back to the host. Safe under ``torch.no_grad()`` and autocast (computes in float32).
        """
        with torch.no_grad():
            x = stack_logits(router_logits)  # (L, T, E) float32
            acc = self._window(x)
            valid = token_mask(mask, x.shape[1], x.device)
            top = top_experts(x, self.top_k)  # (L, T, k), most preferred first
            self._add_routing(acc, x, top, valid)
            if self.domains and domain_ids is not None:
                ids = token_domains(domain_ids, x.shape[1], x.device)
                acc["affinity"] += domain_slot_counts(top, self.num_experts, ids, len(self.domains), valid)
        self._updates += 1

    def _add_routing(
        self, acc: dict[str, torch.Tensor], x: torch.Tensor, top: torch.Tensor, valid: torch.Tensor | None
    ) -> None:
        """Everything but the affinity, for one forward pass (all on the device)."""
        logp = torch.log_softmax(x, dim=-1)
        probs = logp.exp()
        counts = slot_counts(top, self.num_experts, valid)  # (L, E) int64
        # logsumexp(x) = x_i - logp_i for every i; at the arg-max both terms are finite. Cheaper than logsumexp.
        z = (x.amax(-1) - logp.amax(-1)).square()  # (L, T), ST-MoE eq. 5 before the mean
        h = token_entropy(logp, probs)  # (L, T)
        if valid is None:
            tokens = torch.full((), x.shape[1], dtype=torch.float32, device=x.device)
            prob_sums, z_sum, h_sum = probs.sum(1), z.sum(-1), h.sum(-1)
        else:
            weight = valid.float()
            tokens = weight.sum()
            prob_sums = (probs * weight[:, None]).sum(1)
            z_sum, h_sum = (z * weight).sum(-1), (h * weight).sum(-1)
        conv = self.lb_convention
        lb_counts = counts if conv.count == "all_k" else slot_counts(top[..., :1], self.num_experts, valid)
        acc["lb_sum"] += lb_from_sums(lb_counts.float(), prob_sums, tokens, self.top_k, conv)
        acc["maxvio_sum"] += maxvio(counts)  # per forward pass: Wang et al.'s MaxVio_batch
        acc["batches"] += (tokens > 0).float()  # passes that were all padding do not dilute the means
        acc["counts"] += counts
        acc["tokens"] += tokens
        acc["z_sum"] += z_sum
        acc["entropy_sum"] += h_sum
        if self.capacity_factor is not None:
            # Switch Transformer / GShard capacity: each expert takes at most capacity_factor x its even share of
            # the pass's k*T' slots; the rest overflow (Megatron-LM's get_capacity, the same ceil)
            capacity = torch.ceil(tokens * (self.capacity_factor * self.top_k / self.num_experts))
            acc["dropped"] += (counts - capacity).clamp_min(0).sum(-1)
            acc["slots"] += counts.sum(-1)
        if self._passes is not None:
            self._passes.add(counts, lb_counts, prob_sums, tokens)

    def _window(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The accumulators, allocated on the logits' device at the first update."""
        layers, _, experts = x.shape
        if experts != self.num_experts:
            raise ValueError(
                f"router logits have {experts} experts; RouterStats was made for {self.num_experts} experts"
            )
        if self.num_layers is None:
            self.num_layers = layers
        if layers != self.num_layers:
            raise ValueError(f"got logits for {layers} layers; RouterStats was made for {self.num_layers} layers")
        if self._acc is None or self._acc["counts"].device != x.device:
            self._acc = _zeros(layers, experts, len(self.domains), x.device, self.capacity_factor is not None)
        return self._acc

    def compute(self) -> dict[str, torch.Tensor]:
        """The current window's metrics as tensors on the device, keyed by metric name ({} before any update)."""
        acc = self._acc
        if acc is None or self._updates == 0:
            return {}
        rank_maxvio = None
        if self._passes is not None:  # a collective: the window of every rank in the group, summed
            acc, rank_maxvio = reduce_window(acc, self._passes, self.process_group, self.top_k, self.lb_convention)
        log_e = math.log(self.num_experts)
        tokens = acc["tokens"].clamp_min(1)
        batches = acc["batches"].clamp_min(1)
        utilization = load_fractions(acc["counts"])
        load_h = entropy(utilization)  # (L,)
        router_h = acc["entropy_sum"] / tokens  # (L,)
        maxvio_layers = acc["maxvio_sum"] / batches
        load = acc["counts"].float()
        # population standard deviation over experts (Shazeer et al. 2017, arXiv:1701.06538, CV of the load)
        load_cv = load.std(-1, correction=0) / load.mean(-1).clamp_min(torch.finfo(load.dtype).tiny)
        out = {
            names.LB_LOSS: acc["lb_sum"] / batches,
            names.Z_LOSS: (acc["z_sum"] / tokens).mean(),
            names.MAXVIO: maxvio_layers.mean(),
            names.ROUTER_ENTROPY: router_h.mean(),
            names.ROUTER_ENTROPY_NORM: router_h.mean() / log_e,
            names.LOAD_ENTROPY: load_h.mean(),
            names.LOAD_ENTROPY_NORM: load_h.mean() / log_e,
            names.LOAD_CV: load_cv.mean(),
            names.DEAD_EXPERTS: (acc["counts"] == 0).sum().float(),
            names.MAXVIO_MIN: maxvio_layers.min(),
            names.MAXVIO_MEDIAN: torch.quantile(maxvio_layers, 0.5),  # the mean of the middle two for even L
            names.MAXVIO_MAX: maxvio_layers.max(),
            names.UTILIZATION: utilization,
            names.TOKENS_PER_EXPERT: acc["counts"].clone(),  # copies: reset() zeroes the accumulators in place
            names.MAXVIO_LAYERS: maxvio_layers,
            names.ROUTER_ENTROPY_NORM_LAYERS: router_h / log_e,
            names.LOAD_ENTROPY_NORM_LAYERS: load_h / log_e,
        }
        if self.domains:
            out[names.AFFINITY] = acc["affinity"].clone()
        if self.capacity_factor is not None:
            out[names.DROP_RATE] = (acc["dropped"] / acc["slots"].clamp_min(1)).mean()
        if rank_maxvio is not None:
            out[names.MAXVIO_RANK_MAX] = rank_maxvio
        return out

    def log_to(self, run: Any, step: int, extra: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Log the window's metrics with ``run.log(metrics, step=step)`` and start a new window.

        One device-to-host copy for everything, ``extra`` tensors included (``watch`` passes the routers'
        balancing biases there). Scalars are logged as floats, arrays as NumPy arrays (counts as
        int64). The first call also records ``run.config["moe"]`` when the run has an item-assignable config.
        Returns what was logged ({} and nothing logged when the window is empty).
        """
        values = self.compute()
        if not values:
            return {}
        metrics = _to_host({**values, **(extra or {})})
        self._record_config(run)
        run.log(metrics, step=step)
        self.reset()
        return metrics

    def reset(self) -> None:
        """Start a new window (accumulators zeroed in place, on the device)."""
        if self._acc is not None:
            for tensor in self._acc.values():
                tensor.zero_()
        if self._passes is not None:
            self._passes.clear()
        self._updates = 0

    def config(self) -> dict[str, Any]:
        """What ``log_to`` records as ``run.config["moe"]``."""
        return {
            "num_experts": self.num_experts,
            "top_k": self.top_k,
            "num_layers": self.num_layers,
            "domains": list(self.domains),
            "lb_convention": self.lb_convention.name,
            **({"capacity_factor": self.capacity_factor} if self.capacity_factor is not None else {}),
        }

    def _record_config(self, run: Any) -> None:
        if self._config_recorded:
            return
        self._config_recorded = True
        config = getattr(run, "config", None)
        if config is not None and hasattr(config, "__setitem__"):
            config[names.CONFIG_KEY] = self.config()


def _zeros(
    layers: int, experts: int, domains: int, device: torch.device, capacity: bool = False
) -> dict[str, torch.Tensor]:
    def f32(*shape: int) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float32, device=device)

    acc = {
        "counts": torch.zeros(layers, experts, dtype=torch.long, device=device),
        "tokens": f32(),
        "batches": f32(),
        "lb_sum": f32(),
        "z_sum": f32(layers),
        "entropy_sum": f32(layers),
        "maxvio_sum": f32(layers),
    }
    if domains:
        acc["affinity"] = torch.zeros(layers, experts, domains, dtype=torch.long, device=device)
    if capacity:
        acc["dropped"], acc["slots"] = f32(layers), f32(layers)
    return acc


def _to_host(values: dict[str, torch.Tensor]) -> dict[str, Any]:
    """All values in one device-to-host copy: concatenated as float64 (float32 on MPS, which has no float64)."""
    first = next(iter(values.values()))
    dtype = torch.float32 if first.device.type == "mps" else torch.float64
    flat = torch.cat([v.reshape(-1).to(dtype) for v in values.values()]).cpu().numpy()
    out: dict[str, Any] = {}
    offset = 0
    for name, value in values.items():
        part = flat[offset : offset + value.numel()].reshape(tuple(value.shape))
        offset += value.numel()
        if value.dim() == 0:
            out[name] = float(part)
        elif value.dtype == torch.long:
            out[name] = np.rint(part).astype(np.int64)
        else:
            out[name] = part.astype(np.float32)
    return out
