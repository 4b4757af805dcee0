"""Per-domain language-model loss and perplexity from per-token losses and domain ids.

Per-token losses come from e.g. ``F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none")``;
pass ``mask=labels.flatten() != -100`` so ignored positions count nowhere. A domain's loss is the mean over its
tokens (token-weighted, like the overall loss), and its perplexity is exp of that mean. Domains without tokens are
left out of the returned dicts rather than logged as NaN. Key names: ``expertrack.moe.names``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from expertrack.moe import names
from expertrack.moe._inputs import token_domains, token_mask


def domain_loss_sums(
    token_loss: torch.Tensor, domain_ids: torch.Tensor, num_domains: int, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss sums and token counts per domain (float32 [D] each), on the losses' device, without a host sync.

    ``domain_ids`` is one id per token or one per sequence; ids outside [0, num_domains) are skipped.
    """
    loss = token_loss.detach().reshape(-1).float()
    tokens = loss.numel()
    ids = token_domains(domain_ids, tokens, loss.device)
    keep = (ids >= 0) & (ids < num_domains)
    valid = token_mask(mask, tokens, loss.device)
    if valid is not None:
        keep = keep & valid
    slot = ids.clamp(0, num_domains - 1)
    sums = torch.zeros(num_domains, device=loss.device).scatter_add_(0, slot, torch.where(keep, loss, 0.0))
    counts = torch.zeros(num_domains, device=loss.device).scatter_add_(0, slot, keep.float())
    return sums, counts


def _means(sums: Any, counts: Any, domains: Sequence[str]) -> dict[str, float]:
    """Per-domain means in one host transfer, for domains that had tokens."""
    host = torch.stack([torch.as_tensor(sums).float(), torch.as_tensor(counts).float()]).cpu().tolist()
    return {d: s / c for d, s, c in zip(domains, host[0], host[1]) if c > 0}


def perplexity(mean_loss: float) -> float:
    """exp(mean token NLL in nats); inf rather than an OverflowError for absurd losses."""
    return math.exp(mean_loss) if mean_loss < 700 else math.inf


def train_domain_loss(
    token_loss: torch.Tensor, domain_ids: torch.Tensor, domains: Sequence[str], mask: torch.Tensor | None = None
) -> dict[str, float]:
    """``{"train/domain_loss/<domain>": mean loss}`` for one batch (one device-to-host transfer)."""
    sums, counts = domain_loss_sums(token_loss, domain_ids, len(domains), mask)
    return {names.TRAIN_DOMAIN_LOSS + d: v for d, v in _means(sums, counts, domains).items()}


def eval_domain_metrics(loss_sums: Any, token_counts: Any, domains: Sequence[str]) -> dict[str, float]:
    """``{"eval/loss/<domain>": mean loss, "eval/ppl/<domain>": perplexity}`` from summed losses and token counts."""
    out: dict[str, float] = {}
    for domain, mean in _means(loss_sums, token_counts, domains).items():
        out[names.EVAL_LOSS + domain] = mean
        out[names.EVAL_PPL + domain] = perplexity(mean)
    return out


class DomainLoss:
    """Accumulates per-domain loss sums over many batches on the device (an eval pass, or a logging window)."""

    def __init__(self, domains: Sequence[str] = names.DEFAULT_DOMAINS) -> None:
        self.domains = list(domains)
        self._sums: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None

    def update(self, token_loss: torch.Tensor, domain_ids: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add one batch's per-token losses (no host sync)."""
        sums, counts = domain_loss_sums(token_loss, domain_ids, len(self.domains), mask)
        if self._sums is None or self._counts is None:
            self._sums, self._counts = sums, counts
        else:
            self._sums += sums
            self._counts += counts

    def train_metrics(self) -> dict[str, float]:
        """``{"train/domain_loss/<domain>": mean}`` over what was added since the last reset."""
        if self._sums is None or self._counts is None:
            return {}
        return {names.TRAIN_DOMAIN_LOSS + d: v for d, v in _means(self._sums, self._counts, self.domains).items()}

    def eval_metrics(self) -> dict[str, float]:
        """``{"eval/loss/<domain>": mean, "eval/ppl/<domain>": exp(mean)}`` over what was added since the reset."""
        if self._sums is None or self._counts is None:
            return {}
        return eval_domain_metrics(self._sums, self._counts, self.domains)

    def reset(self) -> None:
        """Forget everything added so far."""
        self._sums = self._counts = None
