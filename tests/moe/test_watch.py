"""watch(): finding routers, feeding RouterStats from a real forward pass, and detaching without a trace."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from expertrack.moe import RouterStats, find_routers, names, watch
from tests.moe.helpers import Recorder, TinyMoE

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def hook_state(model: nn.Module) -> dict[str, Any]:
    """Every hook dictionary of every module, copied (keys and callables)."""
    return {
        f"{name}.{attr}": dict(getattr(module, attr))
        for name, module in model.named_modules()
        for attr in HOOK_DICTS
        if hasattr(module, attr)
    }


def make_batch(seed: int = 0, batch: int = 3, seq: int = 5) -> torch.Tensor:
    return torch.randint(0, 32, (batch, seq), generator=torch.Generator().manual_seed(seed))


def router_logits_by_hand(model: TinyMoE, ids: torch.Tensor) -> list[torch.Tensor]:
    """The routers' logits, recomputed layer by layer without any hook."""
    h = model.embed(ids)
    layers = []
    for block in model.blocks:
        layers.append(block.router(h.reshape(-1, h.shape[-1])))
        h = h + block(h)
    return layers


def test_finds_routers_inside_moe_blocks_only() -> None:
    model = TinyMoE()
    assert [name for name, _ in find_routers(model)] == ["blocks.0.router", "blocks.1.router"]  # not gate_proj


def test_watch_feeds_the_same_numbers_as_a_direct_update() -> None:
    torch.manual_seed(0)
    model = TinyMoE(num_experts=4, top_k=2, depth=2)
    ids, domains = make_batch(), torch.tensor([0, 2, 1])
    watcher = watch(model, domains=["code", "math", "prose"])
    assert watcher.stats.top_k == 2 and watcher.stats.num_experts == 4  # read from the model
    with watcher.batch(domain_ids=domains):
        model(ids)
    reference = RouterStats(4, 2, domains=["code", "math", "prose"])
    with torch.no_grad():
        reference.update(router_logits_by_hand(model, ids), domain_ids=domains)
    got, want = watcher.log_to(Recorder(), step=1), reference.log_to(Recorder(), step=1)
    assert set(got) == set(want)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-6), name
    assert got[names.AFFINITY].sum() == 2 * 15 * 2  # layers x tokens x top-k, all with a domain
    watcher.detach()


def test_detach_restores_the_model_exactly() -> None:
    torch.manual_seed(1)
    model = TinyMoE()
    ids = make_batch(1)
    before_hooks = hook_state(model)
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    expected = model(ids)

    watcher = watch(model)
    assert hook_state(model) != before_hooks
    watched = model(ids)
    torch.testing.assert_close(watched, expected, rtol=0, atol=0)  # watching never changes outputs
    watched.sum().backward()  # and gradients still flow
    watcher.detach()

    assert hook_state(model) == before_hooks
    assert all(torch.equal(v, before_state[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(ids), expected, rtol=0, atol=0)
    updates = watcher.stats.num_updates
    model(ids)
    assert watcher.stats.num_updates == updates  # detached: nothing recorded any more


def test_context_manager_detaches_and_named_routers_are_used() -> None:
    model = TinyMoE(depth=3)
    before = hook_state(model)
    with watch(model, routers=["blocks.2.router", "blocks.0.router"], top_k=2) as watcher:
        model(make_batch())
        assert watcher.routers == ["blocks.2.router", "blocks.0.router"]
        assert watcher.stats.num_layers == 2
    assert hook_state(model) == before
    with pytest.raises(ValueError, match="no module named"):
        watch(model, routers=["blocks.9.router"])


def test_paused_passes_and_padding_mask() -> None:
    model = TinyMoE()
    watcher = watch(model)
    with watcher.paused():
        model(make_batch())
    assert watcher.stats.num_updates == 0
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[:, 3:] = False
    watcher.set_domains(torch.tensor([0, 1, 2]), mask=mask)
    model(make_batch())
    logged = watcher.log_to(Recorder(), step=0)
    assert logged[names.TOKENS_PER_EXPERT].sum(-1).tolist() == [9 * 2, 9 * 2]  # 9 real tokens x top-2
    watcher.detach()


def test_errors_in_hooks_warn_once_and_never_stop_training() -> None:
    model = TinyMoE()
    watcher = watch(model)
    watcher.set_domains(torch.tensor([0, 1]))  # wrong: the batch has 3 sequences and 15 tokens
    with pytest.warns(RuntimeWarning, match="router statistics skipped"):
        model(make_batch())
    model(make_batch())  # no second warning, still no exception
    assert watcher.errors == 2 and watcher.stats.num_updates == 0
    watcher.detach()
    strict = watch(model, strict=True)
    strict.set_domains(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="domain_ids"):
        model(make_batch())
    strict.detach()


def test_no_router_found_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="found no router"):
        watch(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))


def test_hf_mixtral_from_config() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.MixtralConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(config).eval()
    ids = torch.randint(0, 64, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, output_router_logits=True)
    before = hook_state(model)  # after a first forward: transformers installs its own output-capturing hooks then

    watcher = watch(model, lb_convention="hf_mixtral")
    assert watcher.routers == ["model.layers.0.mlp.gate", "model.layers.1.mlp.gate"]
    assert (watcher.stats.num_experts, watcher.stats.top_k) == (4, 2)
    with torch.no_grad(), watcher.batch(domain_ids=torch.tensor([0, 1]), mask=mask):
        out = model(input_ids=ids, attention_mask=mask, output_router_logits=True)
    torch.testing.assert_close(out.logits, expected.logits, rtol=0, atol=0)
    logged = watcher.log_to(Recorder(), step=0)
    # transformers computes its aux loss from the same router logits and mask, pooled over layers.
    assert logged[names.LB_LOSS] == pytest.approx(expected.aux_loss.item(), rel=1e-5)
    assert logged[names.TOKENS_PER_EXPERT].sum() == 2 * 10 * 2  # layers x real tokens x top-k
    watcher.detach()
    assert hook_state(model) == before
    with torch.no_grad():
        again = model(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(again.logits, expected.logits, rtol=0, atol=0)
