"""watch() on other router designs: HF Qwen2-MoE, OLMoE and Switch Transformers built from tiny configs (no
download), and a model that recomputes its blocks under activation checkpointing."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from expertrack.moe import RouterStats, find_routers, names, watch
from tests.moe.helpers import MoEBlock, Recorder

transformers = pytest.importorskip("transformers")
SMALL = {"vocab_size": 64, "num_attention_heads": 2, "max_position_embeddings": 32}


def test_qwen2_moe_router_found_and_shared_expert_gate_ignored() -> None:
    config = transformers.Qwen2MoeConfig(
        **SMALL,
        hidden_size=16,
        intermediate_size=32,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=16,
        num_hidden_layers=2,
        num_key_value_heads=1,
        num_experts=4,
        num_experts_per_tok=2,
    )
    model = transformers.Qwen2MoeForCausalLM(config)
    # each MoE block also has shared_expert_gate (Linear(hidden, 1)) and shared_expert.gate_proj: not routers
    assert [name for name, _ in find_routers(model)] == ["model.layers.0.mlp.gate", "model.layers.1.mlp.gate"]
    with watch(model, strict=True) as watcher, torch.no_grad():
        model(torch.randint(0, 64, (2, 5)))
        logged = watcher.log_to(Recorder(), step=0)
    assert logged[names.TOKENS_PER_EXPERT].sum(-1).tolist() == [10 * 2, 10 * 2]


def test_olmoe_router_found_with_top_k_from_the_model() -> None:
    config = transformers.OlmoeConfig(
        **SMALL,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_key_value_heads=1,
        num_experts=8,
        num_experts_per_tok=3,
        eos_token_id=1,
        pad_token_id=0,
    )
    model = transformers.OlmoeForCausalLM(config)
    with watch(model, strict=True) as watcher, torch.no_grad():
        assert (watcher.stats.num_experts, watcher.stats.top_k, watcher.stats.num_layers) == (8, 3, 2)
        model(torch.randint(0, 64, (1, 6)))
        assert watcher.stats.num_updates == 1


def test_switch_router_returns_a_one_hot_first_and_logits_last() -> None:
    config = transformers.SwitchTransformersConfig(
        **SMALL,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        num_experts=4,
        encoder_sparse_step=1,
        decoder_sparse_step=1,
    )
    model = transformers.SwitchTransformersEncoderModel(config).eval()  # eval: no router jitter, no dropout
    routers = [name for name, _ in find_routers(model)]
    assert routers == ["encoder.block.0.layer.1.mlp.router", "encoder.block.1.layer.1.mlp.router"]
    ids = torch.randint(0, 64, (2, 5))
    with watch(model, strict=True) as watcher, torch.no_grad():  # top-1 by design: no top_k to pass (issue 18)
        assert watcher.stats.top_k == 1
        model(input_ids=ids)
        got = watcher.stats.compute()[names.TOKENS_PER_EXPERT]
    # the router's output is (int64 one-hot dispatch, top probability, logits): the logits must be the ones used
    captured: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda m, a, out: captured.append(out[2])) for _, module in find_routers(model)
    ]
    with torch.no_grad():
        model(input_ids=ids)
    for handle in handles:
        handle.remove()
    expected = RouterStats(4, 1, domains=None)
    expected.update(captured)
    assert torch.equal(got, expected.compute()[names.TOKENS_PER_EXPERT])


class CheckpointedMoE(nn.Module):
    """Blocks recomputed during backward (activation checkpointing): their routers run twice per step."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MoEBlock(8, 4, 2) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + checkpoint(block, x, use_reentrant=False)
        return x


def test_activation_checkpointing_recomputation_is_not_counted_twice() -> None:
    model = CheckpointedMoE()
    watcher = watch(model, strict=True)
    for _ in range(3):
        model(torch.randn(2, 5, 8, requires_grad=True)).sum().backward()
    assert watcher.stats.num_updates == 3
    logged = watcher.log_to(Recorder(), step=0)
    assert logged[names.TOKENS_PER_EXPERT].sum(-1).tolist() == [3 * 10 * 2, 3 * 10 * 2]
    watcher.detach()
