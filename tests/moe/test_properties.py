"""Properties that hold for any routing: utilization sums to 1, entropies in [0, log E], MaxVio = 0 iff uniform."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from expertrack.moe import (
    LBConvention,
    RouterStats,
    expert_utilization,
    load_balancing_loss,
    load_entropy,
    maxvio,
    names,
    router_entropy,
    tokens_per_expert,
)


@st.composite
def routing(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    """Logits [L, T, E] (values up to +-30, ties and -inf-like extremes included) and a valid top_k."""
    experts = draw(st.integers(2, 16))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)), experts)
    values = draw(arrays(np.float32, shape, elements=st.floats(-30, 30, width=32)))
    return torch.from_numpy(values), draw(st.integers(1, experts))


@settings(max_examples=60, deadline=None)
@given(routing())
def test_utilization_rows_sum_to_one(case: tuple[torch.Tensor, int]) -> None:
    logits, top_k = case
    util = expert_utilization(list(logits), top_k)
    torch.testing.assert_close(util.sum(-1), torch.ones(logits.shape[0]))
    assert (util >= 0).all()
    assert tokens_per_expert(list(logits), top_k).sum().item() == logits.shape[0] * logits.shape[1] * top_k


@settings(max_examples=60, deadline=None)
@given(routing())
def test_entropies_lie_between_zero_and_log_e(case: tuple[torch.Tensor, int]) -> None:
    logits, top_k = case
    log_e = math.log(logits.shape[-1])
    slack = 1e-5
    h = router_entropy(list(logits))
    assert ((h >= -slack) & (h <= log_e + slack)).all()
    h_load = load_entropy(tokens_per_expert(list(logits), top_k))
    assert ((h_load >= -slack) & (h_load <= log_e + slack)).all()
    normalized = router_entropy(list(logits), normalize=True)
    assert ((normalized >= -slack) & (normalized <= 1 + slack)).all()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 100_000), min_size=2, max_size=64))
def test_maxvio_is_zero_exactly_when_the_load_is_uniform(load: list[int]) -> None:
    value = maxvio(torch.tensor(load)).item()
    if len(set(load)) == 1:
        assert value == 0.0
    else:
        assert value > 0.0
    assert value <= len(load) - 1 + 1e-5  # one expert taking everything is the maximum


@settings(max_examples=40, deadline=None)
@given(routing())
def test_conventions_differ_only_by_their_stated_factors(case: tuple[torch.Tensor, int]) -> None:
    # hf_mixtral (pooled, not divided by k) is exactly k times pooled-divided-by-k; megatron's sum is L times
    # the default per-layer mean.
    logits, top_k = case
    pooled_div_k = load_balancing_loss(list(logits), top_k, convention=LBConvention("pooled", True))
    hf = load_balancing_loss(list(logits), top_k, convention="hf_mixtral")
    torch.testing.assert_close(hf, pooled_div_k * top_k)
    mean = load_balancing_loss(list(logits), top_k)
    torch.testing.assert_close(load_balancing_loss(list(logits), top_k, convention="megatron"), mean * len(logits))
    assert mean.item() >= 0


@settings(max_examples=30, deadline=None)
@given(routing(), st.integers(1, 4))
def test_stats_split_into_updates_matches_one_update(case: tuple[torch.Tensor, int], parts: int) -> None:
    # Counts and token-weighted means do not depend on how the tokens were split into forward passes.
    logits, top_k = case
    whole = RouterStats(logits.shape[-1], top_k, domains=None)
    whole.update(list(logits))
    split = RouterStats(logits.shape[-1], top_k, domains=None)
    for chunk in torch.tensor_split(logits, parts, dim=1):
        if chunk.shape[1]:
            split.update(list(chunk))
    a, b = whole.compute(), split.compute()
    for name in (names.TOKENS_PER_EXPERT, names.UTILIZATION, names.ROUTER_ENTROPY, names.Z_LOSS):
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4)
