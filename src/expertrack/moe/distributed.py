"""Router statistics of the whole global batch: a RouterStats window summed over a torch.distributed process group.

Each rank sees only its own tokens, so the utilization, MaxVio and affinity it computes alone describe one rank's
batch. What can be summed is summed: tokens per expert, token counts, z-loss and entropy sums, the affinity
counts (and any accumulator not named in ``_PER_PASS``). MaxVio and the load-balancing loss are not sums: both
are computed per forward pass from that pass's counts and probability sums (Wang et al.'s MaxVio_batch; Switch's
f_i * P_i), and the pass of the global batch is the union of every rank's pass. So while a window is open each
rank also keeps, on the device, the per-pass sums those two need ([passes, 2 or 3, L, E] values and a token count
per pass), and at log time all of it travels in ONE ``all_reduce(SUM)`` of a single float64 buffer. Float64
holds counts exactly up to 2**53.

The imbalance across ranks (max over ranks of each rank's own window MaxVio, as OLMo-core and Megatron report it)
rides in the same buffer: each rank writes its value into its own slot of a world-size vector of zeros, so the sum
is the vector of all ranks' values.

Every rank of the group must call ``log_to()``/``compute()`` together (it is a collective) after the same number of
``update()`` calls; in data-parallel training, where every rank runs the same steps, that is the case. Cost and
alternatives: docs/moe-metrics.md.
"""

from __future__ import annotations

from typing import Any

import torch

from expertrack.moe.losses import LBConvention, lb_from_sums
from expertrack.moe.metrics import maxvio

# Window accumulators recomputed from the per-pass rows after the reduction; every other one is a sum over tokens
# or passes and is summed over ranks (so an accumulator added to RouterStats later is reduced without a change here).
_PER_PASS = ("maxvio_sum", "lb_sum", "batches")


class PassSums:
    """Per forward pass, what MaxVio and the load-balancing loss of the global batch need, kept on the device."""

    def __init__(self) -> None:
        self.parts: list[torch.Tensor] = []

    def add(self, counts: torch.Tensor, lb_counts: torch.Tensor, prob_sums: torch.Tensor, tokens: torch.Tensor) -> None:
        """Keep one pass: counts and load-balancing counts [L, E] (int64), probability sums [L, E], tokens (0-d).

        Device operations only: no value is read back to the host."""
        rows = [counts, prob_sums] if lb_counts is counts else [counts, lb_counts, prob_sums]
        dtype = _wire_dtype(counts.device)
        self.parts.append(torch.cat([r.to(dtype).reshape(-1) for r in rows] + [tokens.to(dtype).reshape(1)]))

    def clear(self) -> None:
        """Forget the window's passes (a new window starts)."""
        self.parts = []


def reduce_window(
    acc: dict[str, torch.Tensor],
    passes: PassSums,
    group: Any,
    top_k: int,
    conv: LBConvention,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The window's accumulators over all ranks of ``group`` (same keys as ``acc``), and the max over ranks of
    each rank's own window MaxVio. One ``all_reduce`` of one buffer; no host synchronisation of our own."""
    import torch.distributed as dist

    num_layers, num_experts = acc["counts"].shape
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    dtype = _wire_dtype(acc["counts"].device)
    own_maxvio = (acc["maxvio_sum"] / acc["batches"].clamp_min(1)).mean()
    slots = torch.zeros(world, dtype=dtype, device=own_maxvio.device)
    slots[rank] = own_maxvio.to(dtype)
    summed = [k for k in acc if k not in _PER_PASS]
    pieces = [acc[k].to(dtype).reshape(-1) for k in summed]
    flat = torch.cat([*pieces, *passes.parts, slots])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)

    out: dict[str, torch.Tensor] = {}
    offset = 0
    for key in summed:
        size = acc[key].numel()
        part = flat[offset : offset + size].reshape(acc[key].shape)
        out[key] = part.round().long() if acc[key].dtype == torch.long else part
        offset += size
    per_pass = flat[offset : flat.numel() - world].reshape(len(passes.parts), -1)
    out.update(_per_pass_values(per_pass, num_layers, num_experts, top_k, conv))
    return out, flat[-world:].amax()


def _per_pass_values(
    per_pass: torch.Tensor, num_layers: int, num_experts: int, top_k: int, conv: LBConvention
) -> dict[str, torch.Tensor]:
    """MaxVio and load-balancing sums over passes of the global batch, from the reduced per-pass rows."""
    block = num_layers * num_experts
    rows = (per_pass.shape[1] - 1) // block
    grids = per_pass[:, : rows * block].reshape(-1, rows, num_layers, num_experts)
    tokens = per_pass[:, -1]
    counts, prob_sums = grids[:, 0], grids[:, -1]
    lb_counts = grids[:, 1] if rows == 3 else counts
    lb_sum = torch.zeros((), dtype=per_pass.dtype, device=per_pass.device)
    for p in range(per_pass.shape[0]):  # a few passes per window; each is a handful of device operations
        lb_sum = lb_sum + lb_from_sums(lb_counts[p], prob_sums[p], tokens[p], top_k, conv)
    return {
        "maxvio_sum": maxvio(counts).sum(0),  # (L,): per pass, then summed as the local window does
        "batches": (tokens > 0).to(per_pass.dtype).sum(),
        "lb_sum": lb_sum,
    }


def _wire_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps counts exact; MPS has no float64 (and no distributed backend of note), so float32 there
    return torch.float32 if device.type == "mps" else torch.float64
