"""The demo's transformer: shapes, causality, top-2 routing, and the MoE's active parameters matching dense."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from expertrack import moe  # noqa: E402
from expertrack.demo.model import GPT, ModelConfig, count_params  # noqa: E402

SMALL = ModelConfig(n_layer=2, n_embd=32, n_head=2, block_size=16)


def _model(moe_on: bool, cfg: ModelConfig = SMALL) -> GPT:
    torch.manual_seed(0)
    return GPT(ModelConfig(**{**cfg.to_dict(), "moe": moe_on}))


@pytest.mark.parametrize("moe_on", [False, True])
def test_forward_shapes_and_causality(moe_on: bool) -> None:
    model = _model(moe_on)
    x = torch.randint(0, 256, (3, 16))
    logits = model(x)
    assert logits.shape == (3, 16, 256)
    changed = x.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 256  # the future must not change the past
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-5)


def test_moe_keeps_router_logits_and_routes_each_token_to_two_experts() -> None:
    model = _model(True)
    model(torch.randint(0, 256, (3, 16)))
    for layer in model.moe_layers():
        assert layer.last_router_logits is not None and layer.last_topk is not None
        assert layer.last_router_logits.shape == (48, 8)
        assert layer.last_topk.shape == (48, 2)
        assert (layer.last_topk[:, 0] != layer.last_topk[:, 1]).all()


@pytest.mark.parametrize("cfg", [SMALL, ModelConfig()])
def test_moe_active_parameters_match_dense(cfg: ModelConfig) -> None:
    dense, sparse = count_params(_model(False, cfg)), count_params(_model(True, cfg))
    # The only extra active weights are the routers: n_layer * n_embd * n_experts.
    assert sparse["active"] - dense["active"] == sparse["router"] == cfg.n_layer * cfg.n_embd * cfg.n_experts
    assert sparse["router"] / dense["active"] < 0.02
    # Experts hold (E / k) times the dense MLP's weights in total.
    mlp = cfg.n_layer * 2 * cfg.n_embd * cfg.mlp_ratio * cfg.n_embd
    assert sparse["expert"] == mlp * cfg.n_experts // cfg.top_k


def test_watch_finds_every_router() -> None:
    model = _model(True)
    with moe.watch(model, domains=["a", "b", "c"]) as watcher:
        assert watcher.routers == ["blocks.0.mlp.router", "blocks.1.mlp.router"]
        assert watcher.stats.top_k == 2
