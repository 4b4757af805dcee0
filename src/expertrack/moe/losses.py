"""Router auxiliary losses: load balancing (Switch Transformer eqs. 4-6, and its top-k forms) and z-loss (ST-MoE).

Well-known implementations of the load-balancing loss disagree on three choices; each is a field of
:class:`LBConvention`, and docs/moe-metrics.md tabulates which implementation makes which choice:

- ``normalize_by_k``: divide the assignment fraction by k so the loss is 1 at perfect balance for any k
  (Megatron-LM, megablocks), or leave it so the loss is k at balance (HF transformers' Mixtral);
- ``layers``: compute the loss per layer then take the ``"mean"`` (megablocks) or ``"sum"`` (Megatron-LM adds
  each layer's loss to the objective), or ``"pooled"``: one loss over all layers' tokens together (HF Mixtral);
- ``count``: count every one of the k choices (``"all_k"``), or only each token's first choice
  (``"first_choice"``, as GShard's auxiliary loss does).

The default (per-layer mean, divided by k, all k choices) is 1.0 at perfect balance whatever k and the depth are,
so runs with different top-k or layer counts plot on one axis, and a per-layer view never lets one balanced layer
hide an unbalanced one (pooling can: two layers each sending every token to a different expert pool to a perfectly
"balanced" 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from expertrack.moe._inputs import Logits, stack_logits, token_mask

LayerReduction = Literal["mean", "sum", "pooled"]
CountMode = Literal["all_k", "first_choice"]


@dataclass(frozen=True)
class LBConvention:
    """One explicit choice of load-balancing-loss convention (see the module docstring)."""

    layers: LayerReduction = "mean"
    normalize_by_k: bool = True
    count: CountMode = "all_k"

    def __post_init__(self) -> None:
        if self.layers not in ("mean", "sum", "pooled"):
            raise ValueError(f"LBConvention.layers must be 'mean', 'sum' or 'pooled', not {self.layers!r}")
        if self.count not in ("all_k", "first_choice"):
            raise ValueError(f"LBConvention.count must be 'all_k' or 'first_choice', not {self.count!r}")

    @property
    def name(self) -> str:
        """The convention as one self-describing string (recorded in ``run.config["moe"]["lb_convention"]``)."""
        k_norm = "true" if self.normalize_by_k else "false"
        return f"layers={self.layers};normalize_by_k={k_norm};count={self.count}"


LB_CONVENTIONS: dict[str, LBConvention] = {
    "default": LBConvention("mean", True, "all_k"),
    "megablocks": LBConvention("mean", True, "all_k"),  # batched_load_balancing_loss; used by OLMoE
    "megatron": LBConvention("sum", True, "all_k"),  # switch_load_balancing_loss_func, per layer
    "hf_mixtral": LBConvention("pooled", False, "all_k"),  # transformers' Mixtral load_balancing_loss_func
    "gshard": LBConvention("mean", True, "first_choice"),  # GShard's l_aux counts the first choice only
}


def lb_convention(convention: str | LBConvention) -> LBConvention:
    """Resolve a preset name (a key of ``LB_CONVENTIONS``) or pass an :class:`LBConvention` through."""
    if isinstance(convention, LBConvention):
        return convention
    try:
        return LB_CONVENTIONS[convention]
    except KeyError:
        raise ValueError(
            f"unknown load-balancing convention {convention!r}; use one of {sorted(LB_CONVENTIONS)} "
            "or an LBConvention(layers=..., normalize_by_k=..., count=...)"
        ) from None


def load_balancing_loss(
    router_logits: Logits,
    top_k: int = 1,
    mask: torch.Tensor | None = None,
    convention: str | LBConvention = "default",
) -> torch.Tensor:
    """The load-balancing loss E * sum_i f_i * P_i (Switch Transformer, Fedus et al. 2021, eqs. 4-6).

    f_i is the fraction of the (unmasked) tokens' assignments that go to expert i (top-``top_k`` of the logits),
    P_i the mean router probability of expert i. ``router_logits`` is one [T, E] tensor or a list of per-layer
    tensors; ``mask`` ([T] or [batch, seq], True/1 = a real token) leaves padding out of both f and P. The result is
    differentiable through P (the counts are not), so it can serve as the training loss; returns a 0-d tensor.
    """
    conv = lb_convention(convention)
    x = stack_logits(router_logits)  # (L, T, E)
    valid = token_mask(mask, x.shape[1], x.device)
    probs = torch.softmax(x, dim=-1)
    top = top_experts(x, top_k)  # (L, T, k), in order of preference
    chosen = top[..., :1] if conv.count == "first_choice" else top
    counts = slot_counts(chosen, x.shape[-1], valid).to(probs.dtype)
    prob_sums = (probs * valid[:, None]).sum(1) if valid is not None else probs.sum(1)
    tokens = valid.sum() if valid is not None else torch.tensor(float(x.shape[1]), device=x.device)
    return lb_from_sums(counts, prob_sums, tokens, top_k, conv)


def lb_from_sums(
    counts: torch.Tensor, prob_sums: torch.Tensor, tokens: torch.Tensor, top_k: int, conv: LBConvention
) -> torch.Tensor:
    """The load-balancing loss from per-layer sums: assignment counts [L, E], probability sums [L, E], token count.

    ``counts`` must already hold what ``conv.count`` says to count. Shared by :func:`load_balancing_loss` and
    ``RouterStats`` so both compute the same number.
    """
    num_layers, num_experts = counts.shape
    if conv.layers == "pooled":
        counts, prob_sums = counts.sum(0, keepdim=True), prob_sums.sum(0, keepdim=True)
        tokens = tokens * num_layers
    slots_per_token = top_k if (conv.normalize_by_k and conv.count == "all_k") else 1
    denom = tokens.clamp_min(1)  # no tokens (all padding): the loss is 0, not NaN
    f = counts / (denom * slots_per_token)
    p = prob_sums / denom
    per_layer = num_experts * (f * p).sum(-1)  # (L,) or (1,) when pooled
    return per_layer.sum() if conv.layers == "sum" else per_layer.mean()


def router_z_loss(
    router_logits: Logits, mask: torch.Tensor | None = None, layers: Literal["mean", "sum"] = "mean"
) -> torch.Tensor:
    """The router z-loss: mean over tokens of logsumexp(logits)^2 (ST-MoE, Zoph et al. 2022, eq. 5).

    Per layer, over unmasked tokens, then the mean (default) or sum over layers. Returns a 0-d tensor,
    differentiable.
    """
    if layers not in ("mean", "sum"):
        raise ValueError(f"layers must be 'mean' or 'sum', not {layers!r}")
    x = stack_logits(router_logits)
    valid = token_mask(mask, x.shape[1], x.device)
    z = torch.logsumexp(x, dim=-1).square()  # (L, T)
    per_layer = z.mean(-1) if valid is None else (z * valid).sum(-1) / valid.sum().clamp_min(1)
    return per_layer.sum() if layers == "sum" else per_layer.mean()


def top_experts(x: torch.Tensor, top_k: int) -> torch.Tensor:
    """Indices [..., k] of each token's top-k experts, most preferred first (argmax for k=1: same choice, faster)."""
    return x.argmax(-1, keepdim=True) if top_k == 1 else torch.topk(x, top_k, dim=-1).indices


def slot_counts(chosen: torch.Tensor, num_experts: int, valid: torch.Tensor | None) -> torch.Tensor:
    """Token-slot assignments per expert, int64 [L, E], from chosen expert indices [L, T, c] and a [T] mask.

    scatter_add with fixed bounds rather than bincount: bincount sizes its output from the data, which makes the
    host wait for the device.
    """
    num_layers, tokens, slots = chosen.shape
    counts = torch.zeros(num_layers, num_experts, dtype=torch.long, device=chosen.device)
    if valid is None:
        ones = torch.ones(1, 1, dtype=torch.long, device=chosen.device).expand(num_layers, tokens * slots)
        return counts.scatter_add_(1, chosen.reshape(num_layers, -1), ones)
    weights = valid.long()[None, :, None].expand(num_layers, tokens, slots).reshape(num_layers, -1)
    return counts.scatter_add_(1, chosen.reshape(num_layers, -1), weights)
