"""Turning what callers pass (per-layer logits, padding masks, domain ids) into one canonical form.

Everything here looks only at shapes and dtypes, which live on the host: no value is read, so nothing here waits
for a device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Logits = torch.Tensor | Sequence[torch.Tensor]


def stack_logits(router_logits: Logits) -> torch.Tensor:
    """Router logits as one float32 tensor [L, T, E].

    Accepts one tensor [T, E] (one layer), one tensor [..., E] (flattened to tokens), or a sequence of per-layer
    tensors [..., E] with the same number of tokens. bf16/fp16 logits are upcast here, so every sum that follows
    accumulates in float32.
    """
    if isinstance(router_logits, torch.Tensor):
        layers: Sequence[torch.Tensor] = [router_logits]
    else:
        layers = list(router_logits)
    if not layers:
        raise ValueError("router logits: got an empty list of layers")
    num_experts = layers[0].shape[-1]
    flat = []
    for i, logits in enumerate(layers):
        if logits.dim() < 2 or logits.shape[-1] != num_experts:
            raise ValueError(
                f"router logits: layer {i} has shape {tuple(logits.shape)}; expected [..., {num_experts}] "
                "(tokens x experts, the same number of experts in every layer)"
            )
        flat.append(logits.reshape(-1, num_experts))
    tokens = flat[0].shape[0]
    for i, logits in enumerate(flat):
        if logits.shape[0] != tokens:
            raise ValueError(
                f"router logits: layer {i} has {logits.shape[0]} tokens, layer 0 has {tokens}; "
                "every layer must see the same tokens"
            )
    stacked = torch.stack(flat) if len(flat) > 1 else flat[0].unsqueeze(0)
    return stacked.float()


def token_mask(mask: torch.Tensor | None, tokens: int, device: torch.device) -> torch.Tensor | None:
    """A padding mask as a bool tensor [T] on ``device`` (True = a real token), or None when there is no mask.

    Accepts any shape with T elements ([T], or [batch, seq] like an attention mask), bool or 0/1 numbers.
    """
    if mask is None:
        return None
    if mask.numel() != tokens:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)} ({mask.numel()} elements) but the logits have {tokens} tokens"
        )
    return mask.reshape(tokens).to(device=device, non_blocking=True).bool()


def token_domains(domain_ids: torch.Tensor, tokens: int, device: torch.device) -> torch.Tensor:
    """Domain ids as an int64 tensor [T] on ``device``.

    Accepts one id per token ([T] or [batch, seq]) or one id per sequence ([batch], repeated over the sequence,
    which requires T to be a multiple of batch). Ids outside [0, D) mean "no domain" and are skipped by the callers.
    """
    ids = domain_ids.reshape(-1)
    if ids.numel() != tokens:
        batch = ids.numel()
        if batch == 0 or tokens % batch != 0:
            raise ValueError(
                f"domain_ids has shape {tuple(domain_ids.shape)}; expected one id per token ({tokens}) "
                "or one id per sequence (a number that divides the token count)"
            )
        ids = ids.repeat_interleave(tokens // batch)
    return ids.to(device=device, dtype=torch.long, non_blocking=True)
