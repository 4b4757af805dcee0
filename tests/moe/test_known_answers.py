"""Known answers worked out by hand for tiny cases (2-4 tokens, 2-4 experts, top-1 and top-2, masks, two layers).

Logits are built as log(p) + c per token, so softmax returns p exactly and logsumexp returns c (z = c^2).
LB below means E * sum_i f_i * P_i; f_i counts token-slot assignments, P_i is the mean routing probability.
"""

from __future__ import annotations

import math

import pytest
import torch

from expertrack.moe import (
    LBConvention,
    expert_utilization,
    load_balancing_loss,
    load_entropy,
    maxvio,
    router_entropy,
    router_z_loss,
    tokens_per_expert,
)
from tests.moe.helpers import logits_from_probs

# Case 1: E=2, top-1, two tokens that both prefer expert 0, z shifts 1 and 2.
#   counts [2, 0] -> f = [1, 0]; P = [0.75, 0.25]; LB = 2 * (1 * 0.75) = 1.5
#   z = (1^2 + 2^2) / 2 = 2.5; MaxVio = (2 - 1) / 1 = 1 (= E - 1, total collapse)
CASE1 = logits_from_probs([[0.75, 0.25], [0.75, 0.25]], shifts=[1.0, 2.0])

# Case 2: E=4, top-2.
#   t0 p = [.4, .3, .2, .1] -> experts {0, 1};  t1 p = [.4, .1, .2, .3] -> experts {0, 3}
#   counts [2, 1, 0, 1]; P = [.4, .2, .2, .2]
#   f without /k = counts / 2 tokens = [1, .5, 0, .5]; sum f*P = .4 + .1 + 0 + .1 = .6
#   LB (HF Mixtral, value k at balance) = 4 * .6 = 2.4; divided by k = 1.2
#   first choice only (GShard): both tokens pick 0 first -> f = [1, 0, 0, 0] -> 4 * .4 = 1.6
#   shifts +1 and -1 -> z = (1 + 1) / 2 = 1
CASE2 = logits_from_probs([[0.4, 0.3, 0.2, 0.1], [0.4, 0.1, 0.2, 0.3]], shifts=[1.0, -1.0])
H_CASE2_TOKEN = -sum(p * math.log(p) for p in (0.4, 0.3, 0.2, 0.1))  # both tokens have this entropy

# Case 2 plus a padding token (shift 5, prefers expert 3) that a mask must remove entirely.
CASE2_PADDED = torch.cat([CASE2, logits_from_probs([[0.1, 0.1, 0.1, 0.7]], shifts=[5.0])])
MASK = torch.tensor([[1, 1, 0]])  # [batch, seq] like an attention mask


def test_case1_top1_two_experts() -> None:
    assert load_balancing_loss(CASE1, top_k=1).item() == pytest.approx(1.5)
    assert router_z_loss(CASE1).item() == pytest.approx(2.5)
    assert tokens_per_expert(CASE1, 1).tolist() == [2, 0]
    assert expert_utilization(CASE1, 1).tolist() == [1.0, 0.0]
    assert maxvio(tokens_per_expert(CASE1, 1)).item() == pytest.approx(1.0)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert router_entropy(CASE1).item() == pytest.approx(h)
    assert router_entropy(CASE1, normalize=True).item() == pytest.approx(h / math.log(2))
    assert load_entropy(tokens_per_expert(CASE1, 1)).item() == 0.0


def test_case2_top2_each_convention() -> None:
    assert load_balancing_loss(CASE2, 2).item() == pytest.approx(1.2)
    assert load_balancing_loss(CASE2, 2, convention="hf_mixtral").item() == pytest.approx(2.4)
    assert load_balancing_loss(CASE2, 2, convention="megatron").item() == pytest.approx(1.2)
    assert load_balancing_loss(CASE2, 2, convention="gshard").item() == pytest.approx(1.6)
    custom = LBConvention(layers="mean", normalize_by_k=False, count="all_k")
    assert load_balancing_loss(CASE2, 2, convention=custom).item() == pytest.approx(2.4)
    assert router_z_loss(CASE2).item() == pytest.approx(1.0)


def test_case2_load_metrics() -> None:
    counts = tokens_per_expert(CASE2, 2)
    assert counts.tolist() == [2, 1, 0, 1]
    assert expert_utilization(CASE2, 2).tolist() == [0.5, 0.25, 0.0, 0.25]
    assert maxvio(counts).item() == pytest.approx(1.0)  # mean load 1, max 2
    # load [.5, .25, 0, .25]: H = .5 ln 2 + 2 * .25 ln 4 = 1.5 ln 2; over ln 4 = 0.75
    assert load_entropy(counts).item() == pytest.approx(1.5 * math.log(2))
    assert load_entropy(counts, normalize=True).item() == pytest.approx(0.75)
    assert router_entropy(CASE2).item() == pytest.approx(H_CASE2_TOKEN)


def test_padding_mask_removes_a_token_from_every_metric() -> None:
    assert load_balancing_loss(CASE2_PADDED, 2, mask=MASK).item() == pytest.approx(1.2)
    assert load_balancing_loss(CASE2_PADDED, 2, mask=MASK, convention="hf_mixtral").item() == pytest.approx(2.4)
    assert router_z_loss(CASE2_PADDED, mask=MASK).item() == pytest.approx(1.0)
    assert router_z_loss(CASE2_PADDED).item() == pytest.approx((1 + 1 + 25) / 3)  # unmasked, for contrast
    assert tokens_per_expert(CASE2_PADDED, 2, mask=MASK.bool()).tolist() == [2, 1, 0, 1]
    assert router_entropy(CASE2_PADDED, mask=MASK).item() == pytest.approx(H_CASE2_TOKEN)
    assert load_balancing_loss(CASE2_PADDED, 2).item() != pytest.approx(1.2)


def test_two_layers_pooled_and_per_layer_differ_top1() -> None:
    # Layer A sends both tokens to expert 0 (P = [.75, .25]), layer B both to expert 1 (P = [.25, .75]).
    # Per layer: 2 * .75 = 1.5 each -> mean 1.5, sum 3.0.
    # Pooled: f = [.5, .5], P = [.5, .5] -> 2 * (.25 + .25) = 1.0: pooling hides two collapsed layers.
    layer_a = logits_from_probs([[0.75, 0.25], [0.75, 0.25]])
    layer_b = logits_from_probs([[0.25, 0.75], [0.25, 0.75]])
    layers = [layer_a, layer_b]
    assert load_balancing_loss(layers, 1).item() == pytest.approx(1.5)
    assert load_balancing_loss(layers, 1, convention="megatron").item() == pytest.approx(3.0)
    assert load_balancing_loss(layers, 1, convention="hf_mixtral").item() == pytest.approx(1.0)
    assert tokens_per_expert(layers, 1).tolist() == [[2, 0], [0, 2]]
    assert maxvio(tokens_per_expert(layers, 1)).tolist() == [1.0, 1.0]


def test_two_layers_pooled_and_per_layer_differ_top2() -> None:
    # Layer A is case 2: LB 2.4 (1.2 divided by k). Layer B: t0 p = [.1, .2, .3, .4] -> {3, 2},
    # t1 p = [.3, .2, .1, .4] -> {3, 0}; counts [1, 0, 1, 2], P = [.2, .2, .2, .4]:
    # f = [.5, 0, .5, 1]; sum f*P = .1 + 0 + .1 + .4 = .6 -> 2.4 (1.2 divided by k).
    # Pooled over 4 token-rows: counts [3, 1, 1, 3] / 4 = [.75, .25, .25, .75]; P = [.3, .2, .2, .3]
    # sum f*P = .225 + .05 + .05 + .225 = .55 -> HF value 4 * .55 = 2.2 (1.1 divided by k).
    layer_b = logits_from_probs([[0.1, 0.2, 0.3, 0.4], [0.3, 0.2, 0.1, 0.4]])
    layers = [CASE2, layer_b]
    assert load_balancing_loss(layers, 2).item() == pytest.approx(1.2)
    assert load_balancing_loss(layers, 2, convention="megatron").item() == pytest.approx(2.4)
    assert load_balancing_loss(layers, 2, convention="hf_mixtral").item() == pytest.approx(2.2)
    pooled_div_k = LBConvention(layers="pooled", normalize_by_k=True)
    assert load_balancing_loss(layers, 2, convention=pooled_div_k).item() == pytest.approx(1.1)
    assert router_z_loss(layers, layers="sum").item() == pytest.approx(1.0)  # case 2's 1 + layer B's 0


def test_perfect_balance_is_one_by_default_and_k_in_hf_convention() -> None:
    # Four tokens, E=4, top-2, each token's two choices cover the experts evenly and P is uniform on average.
    rows = [[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.3, 0.1, 0.4, 0.2], [0.2, 0.4, 0.1, 0.3]]
    logits = logits_from_probs(rows)
    assert tokens_per_expert(logits, 2).tolist() == [2, 2, 2, 2]
    assert load_balancing_loss(logits, 2).item() == pytest.approx(1.0)
    assert load_balancing_loss(logits, 2, convention="hf_mixtral").item() == pytest.approx(2.0)
    assert maxvio(tokens_per_expert(logits, 2)).item() == 0.0


def test_all_padding_gives_zero_not_nan() -> None:
    empty = torch.zeros(2, dtype=torch.bool)
    assert load_balancing_loss(CASE1, 1, mask=empty).item() == 0.0
    assert router_z_loss(CASE1, mask=empty).item() == 0.0


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown load-balancing convention"):
        load_balancing_loss(CASE1, 1, convention="nope")
    with pytest.raises(ValueError, match="layers must be"):
        LBConvention(layers="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask has shape"):
        load_balancing_loss(CASE1, 1, mask=torch.ones(3))
    with pytest.raises(ValueError, match="same number of experts"):
        load_balancing_loss([CASE1, CASE2], 1)


def test_load_balancing_loss_is_differentiable() -> None:
    logits = CASE2.clone().float().requires_grad_(True)
    load_balancing_loss(logits, 2).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
