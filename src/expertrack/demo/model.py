"""A tiny byte-level decoder-only transformer, dense or Mixture-of-Experts, written to be read.

The shape of nanoGPT (Karpathy): token + position embeddings, ``n_layer`` pre-norm blocks of causal
self-attention and an MLP, a final LayerNorm and a head tied to the token embedding. The only change for
the MoE is the MLP:

* dense: ``Linear(C, 4C) -> GELU -> Linear(4C, C)``                       8 C^2 weights, all active.
* MoE:   8 experts, each ``Linear(C, 2C) -> GELU -> Linear(2C, C)``       4 C^2 weights per expert,
  a router ``Linear(C, 8)`` and top-2 routing: every token runs through 2 experts, so
  2 * 4 C^2 = 8 C^2 expert weights are active per token, the same as the dense MLP. The router's
  ``C * 8`` weights are the only extra active parameters (under 1% at the demo's sizes; see
  :func:`count_params` and docs/demo.md).

Shapes in comments: B batch, T time (bytes), C ``n_embd``, H heads, N = B*T tokens, E experts, K top-k.
Every MoE layer keeps its last router logits (``.last_router_logits``, [N, E]) and top-k choices
(``.last_topk``, [N, K]) so that the training loop can add the load-balancing loss and z-loss, and so
router statistics can be read without a second forward pass. The router is an ``nn.Linear`` named
``router``, which is what ``expertrack.moe.watch`` looks for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab_size: int = 256  # bytes
    block_size: int = 128  # context length, in bytes
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 96  # width C of the residual stream
    mlp_ratio: int = 4  # dense MLP hidden size = mlp_ratio * C
    dropout: float = 0.0  # off: the runs are short and we want determinism to be easy to see
    moe: bool = False  # dense MLP (False) or Mixture-of-Experts MLP in every block (True)
    n_experts: int = 8  # E
    top_k: int = 2  # K: experts per token
    # Each expert's hidden size is mlp_ratio * C / top_k, so the K active experts together have as many
    # weights as the dense MLP: active parameters match.
    router_init_std: float = 0.02

    @property
    def expert_hidden(self) -> int:
        return self.mlp_ratio * self.n_embd // self.top_k

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)  # q, k, v in one matmul
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x [B, T, C]
        # [B, T, C] -> [B, H, T, C/H]
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )  # [B, H, T, C/H]
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads: [B, T, C]
        return self.proj(y)


class MLP(nn.Module):
    """The dense feed-forward block: C -> hidden -> C."""

    def __init__(self, n_embd: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class MoE(nn.Module):
    """Top-K Mixture-of-Experts MLP: a router picks K of E expert MLPs for every token.

    Dropless (no capacity limit): every token is processed by exactly K experts, whose outputs are
    mixed with the router's softmax probabilities renormalised over the chosen K (as in Mixtral).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_experts = cfg.n_experts
        self.top_k = cfg.top_k
        self.router = nn.Linear(cfg.n_embd, cfg.n_experts, bias=False)  # [N, C] -> [N, E] logits
        self.experts = nn.ModuleList(MLP(cfg.n_embd, cfg.expert_hidden) for _ in range(cfg.n_experts))
        self.last_router_logits: torch.Tensor | None = None  # [N, E], kept for the aux losses and stats
        self.last_topk: torch.Tensor | None = None  # [N, K] expert indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        flat = x.reshape(B * T, C)  # [N, C]
        logits = self.router(flat)  # [N, E]
        probs = logits.float().softmax(dim=-1)  # [N, E]
        weights, chosen = probs.topk(self.top_k, dim=-1)  # [N, K], [N, K]
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)  # renormalise over the K

        out = torch.zeros_like(flat)  # [N, C]
        for e, expert in enumerate(self.experts):
            token_idx, slot = torch.where(chosen == e)  # the tokens that picked expert e, and in which slot
            if token_idx.numel() == 0:
                continue
            y = expert(flat[token_idx])  # [n_e, C]
            out.index_add_(0, token_idx, y * weights[token_idx, slot, None])

        self.last_router_logits = logits
        self.last_topk = chosen
        return out.view(B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp: nn.Module = MoE(cfg) if cfg.moe else MLP(cfg.n_embd, cfg.mlp_ratio * cfg.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)  # byte embeddings
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)  # learned positions
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        # GPT-2's scaled init for the projections that write into the residual stream.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        for m in self.moe_layers():
            nn.init.normal_(m.router.weight, mean=0.0, std=cfg.router_init_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def moe_layers(self) -> list[MoE]:
        return [b.mlp for b in self.blocks if isinstance(b.mlp, MoE)]

    def router_logits(self) -> list[torch.Tensor]:
        """Every MoE layer's router logits from the last forward pass: L x [N, E] (differentiable)."""
        out = [m.last_router_logits for m in self.moe_layers()]
        if any(x is None for x in out):
            raise RuntimeError("router_logits(): run a forward pass first")
        return [x for x in out if x is not None]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx`` [B, T] byte ids -> logits [B, T, vocab]."""
        t = idx.shape[1]  # T
        if t > self.cfg.block_size:
            raise ValueError(f"sequence of {t} bytes, but block_size is {self.cfg.block_size}")
        pos = torch.arange(t, device=idx.device)  # [T]
        x = self.drop(self.wte(idx) + self.wpe(pos))  # [B, T, C]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # [B, T, vocab]


def count_params(model: GPT) -> dict[str, int]:
    """Total and active (used per token) parameters. Position embeddings are counted; tied weights once.

    Active = total - (E - K)/E of the expert weights: each token uses K of the E experts.
    """
    total = sum(p.numel() for p in model.parameters())
    expert = sum(p.numel() for m in model.moe_layers() for p in m.experts.parameters())
    router = sum(m.router.weight.numel() for m in model.moe_layers())
    cfg = model.cfg
    inactive = expert * (cfg.n_experts - cfg.top_k) // cfg.n_experts if cfg.moe else 0
    return {"total": total, "active": total - inactive, "expert": expert, "router": router}
