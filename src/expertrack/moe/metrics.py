"""Router metrics on logits: tokens per expert, utilization, MaxVio, router and load entropy, domain affinity.

Every function takes router logits as one tensor [T, E] (one layer: results have no layer axis) or a list of
per-layer tensors (results gain a leading layer axis L), an optional padding mask ([T] or [batch, seq],
True/1 = a real token), and computes in float32 whatever the logits' dtype. None of them reads a value back to the
host. Formulas and sources: docs/moe-metrics.md.
"""

from __future__ import annotations

import math

import torch

from expertrack.moe._inputs import Logits, stack_logits, token_domains, token_mask
from expertrack.moe.losses import slot_counts, top_experts


def _per_layer(result: torch.Tensor, router_logits: Logits) -> torch.Tensor:
    """Drop the layer axis when the caller passed a single tensor (one layer)."""
    return result[0] if isinstance(router_logits, torch.Tensor) else result


def tokens_per_expert(router_logits: Logits, top_k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Token-slot assignments per expert (int64 [E] or [L, E]): each token counts once for each of its top-k."""
    x = stack_logits(router_logits)
    valid = token_mask(mask, x.shape[1], x.device)
    top = top_experts(x, top_k)
    return _per_layer(slot_counts(top, x.shape[-1], valid), router_logits)


def expert_utilization(router_logits: Logits, top_k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The fraction of token-slot assignments each expert receives (float32 [E] or [L, E]; sums to 1 per layer)."""
    return load_fractions(tokens_per_expert(router_logits, top_k, mask))


def load_fractions(load: torch.Tensor) -> torch.Tensor:
    """Normalise loads [..., E] to fractions that sum to 1 over experts (all zeros stay zeros)."""
    load = load.float()
    return load / load.sum(-1, keepdim=True).clamp_min(torch.finfo(load.dtype).tiny)


def maxvio(load: torch.Tensor) -> torch.Tensor:
    """MaxVio = (max_i load_i - mean load) / mean load over experts (Wang et al. 2024, "Auxiliary-Loss-Free Load
    Balancing Strategy for Mixture-of-Experts", arXiv:2408.15664, where it is computed per training batch).

    ``load`` is counts or fractions [..., E]; returns [...]. 0 exactly when the load is uniform; E - 1 when one expert
    takes everything. A layer with no load at all gives 0.
    """
    load = load.float()
    mean = load.mean(-1)
    return (load.amax(-1) - mean) / mean.clamp_min(torch.finfo(load.dtype).tiny)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last axis, with 0 * log 0 = 0."""
    return -torch.special.xlogy(probs, probs).sum(-1)


def load_entropy(load: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """The entropy of the aggregate load distribution over experts ([..., E] counts or fractions -> [...]).

    In [0, log E]; with ``normalize`` divided by log E, so 1 means perfectly even load.
    """
    h = entropy(load_fractions(load))
    return h / math.log(load.shape[-1]) if normalize else h


def token_entropy(log_probs: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-token entropy [..., T] of routing distributions given as log-probabilities [..., T, E] (and, to save
    an exp, the probabilities themselves)."""
    # Clamping keeps 0 * -inf (an expert masked to -inf) at 0 rather than NaN.
    logp = log_probs.clamp_min(torch.finfo(log_probs.dtype).min)
    return -((logp.exp() if probs is None else probs) * logp).sum(-1)


def router_entropy(router_logits: Logits, mask: torch.Tensor | None = None, normalize: bool = False) -> torch.Tensor:
    """The mean over tokens of the entropy of each token's routing distribution softmax(logits) (nats).

    Low when the router is confident about each token, whatever the overall load; compare :func:`load_entropy`.
    Returns a 0-d tensor for one layer, [L] for a list; with ``normalize`` divided by log E (in [0, 1]).
    """
    x = stack_logits(router_logits)
    valid = token_mask(mask, x.shape[1], x.device)
    h = token_entropy(torch.log_softmax(x, dim=-1))  # (L, T)
    mean = h.mean(-1) if valid is None else (h * valid).sum(-1) / valid.sum().clamp_min(1)
    if normalize:
        mean = mean / math.log(x.shape[-1])
    return _per_layer(mean, router_logits)


def affinity_counts(
    router_logits: Logits,
    domain_ids: torch.Tensor,
    num_domains: int,
    top_k: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token-slot assignments per (layer, expert, domain): int64 [E, D] for one layer, [L, E, D] for a list.

    ``domain_ids`` holds one id per token ([T] or [batch, seq]) or one per sequence ([batch]); ids outside
    [0, num_domains) are not counted. Normalisations for reports are in ``expertrack.moe.affinity``.
    """
    x = stack_logits(router_logits)
    valid = token_mask(mask, x.shape[1], x.device)
    domains = token_domains(domain_ids, x.shape[1], x.device)
    top = top_experts(x, top_k)
    return _per_layer(domain_slot_counts(top, x.shape[-1], domains, num_domains, valid), router_logits)


def domain_slot_counts(
    chosen: torch.Tensor,
    num_experts: int,
    domains: torch.Tensor,
    num_domains: int,
    valid: torch.Tensor | None,
) -> torch.Tensor:
    """Counts [L, E, D] from chosen experts [L, T, k], domain ids [T] and a [T] mask (fixed-size scatter, no sync)."""
    num_layers, tokens, slots = chosen.shape
    in_range = (domains >= 0) & (domains < num_domains)
    keep = in_range if valid is None else in_range & valid
    cell = chosen * num_domains + domains.clamp(0, num_domains - 1)[None, :, None]  # (L, T, k) flat (e, d) index
    weights = keep.long()[None, :, None].expand(num_layers, tokens, slots).reshape(num_layers, -1)
    counts = torch.zeros(num_layers, num_experts * num_domains, dtype=torch.long, device=chosen.device)
    counts.scatter_add_(1, cell.reshape(num_layers, -1), weights)
    return counts.view(num_layers, num_experts, num_domains)
