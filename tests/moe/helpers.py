"""Shared pieces of the MoE tests: a run recorder, logits built from chosen probabilities, a tiny MoE model."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class Recorder:
    """The smallest thing ``RouterStats.log_to`` accepts: ``.log(dict, step=...)`` and an item-assignable config."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.logged: list[tuple[int, dict[str, Any]]] = []

    def log(self, data: dict[str, Any], step: int) -> None:
        self.logged.append((step, data))


def logits_from_probs(rows: list[list[float]], shifts: list[float] | None = None) -> torch.Tensor:
    """Logits log(p) + c per token: softmax gives back p exactly and logsumexp(logits) is c (so z = c^2)."""
    shifts = shifts or [0.0] * len(rows)
    return torch.tensor([[math.log(p) + c for p in row] for row, c in zip(rows, shifts)], dtype=torch.float64)


class Expert(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.up = nn.Linear(dim, 2 * dim)
        self.down = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


class MoEBlock(nn.Module):
    """A top-k MoE feed-forward block: router Linear -> softmax -> top-k -> weighted experts."""

    def __init__(self, dim: int, num_experts: int, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = nn.ModuleList([Expert(dim) for _ in range(num_experts)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (T, C)
        weights, chosen = torch.softmax(self.router(flat), dim=-1).topk(self.top_k, dim=-1)  # (T, k)
        weights = weights / weights.sum(-1, keepdim=True)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(chosen == e)
            out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return out.reshape(x.shape)


class TinyMoE(nn.Module):
    """Embedding, ``depth`` residual MoE blocks (each next to a dense ``gate_proj`` that must not be mistaken for a
    router), and an output head."""

    def __init__(self, vocab: int = 32, dim: int = 16, num_experts: int = 4, top_k: int = 2, depth: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList([MoEBlock(dim, num_experts, top_k) for _ in range(depth)])
        self.gate_proj = nn.Linear(dim, num_experts)  # named like a router, but not inside an MoE block
        self.head = nn.Linear(dim, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h + 0 * self.gate_proj(h).sum(-1, keepdim=True))
