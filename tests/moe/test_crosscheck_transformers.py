"""Our losses against implementations we did not write: HF transformers' Mixtral and Switch Transformers code.

Skipped only when transformers cannot be imported (it is in the dev extra).
"""

from __future__ import annotations

import pytest
import torch

from expertrack.moe import load_balancing_loss, router_z_loss

pytest.importorskip("transformers")
from transformers.models.mixtral.modeling_mixtral import (
    load_balancing_loss_func as mixtral_lb,
)
from transformers.models.switch_transformers.modeling_switch_transformers import (
    load_balancing_loss_func as switch_lb,
)
from transformers.models.switch_transformers.modeling_switch_transformers import (
    router_z_loss_func as switch_z,
)


def random_layers(seed: int, layers: int = 3, batch: int = 2, seq: int = 7, experts: int = 8) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch * seq, experts, generator=gen) * 2 for _ in range(layers)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_mixtral_load_balancing_loss_without_mask(seed: int, top_k: int) -> None:
    layers = random_layers(seed)
    theirs = mixtral_lb(tuple(layers), num_experts=8, top_k=top_k)
    ours = load_balancing_loss(layers, top_k, convention="hf_mixtral")
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("top_k", [1, 2])
def test_mixtral_load_balancing_loss_with_attention_mask(seed: int, top_k: int) -> None:
    layers = random_layers(seed)
    mask = (torch.rand(2, 7, generator=torch.Generator().manual_seed(seed + 100)) > 0.3).long()
    mask[:, 0] = 1  # at least one real token per sequence
    theirs = mixtral_lb(tuple(layers), num_experts=8, top_k=top_k, attention_mask=mask)
    ours = load_balancing_loss(layers, top_k, mask=mask, convention="hf_mixtral")
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    # and the mask matters: without it the value differs
    assert not torch.allclose(load_balancing_loss(layers, top_k, convention="hf_mixtral"), theirs)


def test_our_default_differs_from_mixtral_exactly_by_pooling_and_k() -> None:
    layers = random_layers(7)
    per_layer_hf = [mixtral_lb((layer,), num_experts=8, top_k=2) for layer in layers]
    expected = torch.stack(per_layer_hf).mean() / 2  # per-layer mean, divided by k
    torch.testing.assert_close(load_balancing_loss(layers, 2), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_switch_router_z_loss(seed: int) -> None:
    logits = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(seed)) * 3  # [groups, tokens, experts]
    torch.testing.assert_close(router_z_loss(logits.reshape(-1, 8)), switch_z(logits), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_switch_top1_load_balancing_loss_matches_per_group_mean(seed: int) -> None:
    # Switch's loss averages a per-group E * sum f*P over groups: our per-layer "mean" convention, with groups
    # passed as layers.
    logits = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(seed)) * 2
    probs = torch.softmax(logits, dim=-1)
    theirs = switch_lb(probs, torch.argmax(probs, dim=-1))
    ours = load_balancing_loss(list(logits), 1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
