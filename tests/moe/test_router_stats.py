"""RouterStats: window accumulation, what log_to logs (names, shapes, one transfer), no host sync, autocast."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from expertrack.moe import RouterStats, load_balancing_loss, names
from tests.moe.helpers import Recorder, logits_from_probs

A = [0.75, 0.25]
B = [0.25, 0.75]


def two_updates(stats: RouterStats) -> None:
    # Update 1: two tokens, both to expert 0: counts [2, 0], MaxVio 1, LB 2 * .75 = 1.5.
    stats.update([logits_from_probs([A, A])])
    # Update 2: four tokens split evenly: counts [2, 2], MaxVio 0, P = [.5, .5], LB 2 * (.25 + .25) = 1.0.
    stats.update([logits_from_probs([A, B, A, B])])


def test_window_accumulates_counts_and_averages_per_pass_values() -> None:
    stats = RouterStats(num_experts=2, top_k=1, domains=None)
    two_updates(stats)
    run = Recorder()
    logged = stats.log_to(run, step=10)
    assert run.logged == [(10, logged)]
    assert logged[names.TOKENS_PER_EXPERT].tolist() == [[4, 2]]
    np.testing.assert_allclose(logged[names.UTILIZATION], [[4 / 6, 2 / 6]], rtol=1e-6)
    # MaxVio is per forward pass (Wang et al.'s MaxVio_batch), averaged: (1 + 0) / 2, not the window's (4-3)/3.
    assert logged[names.MAXVIO] == pytest.approx(0.5)
    assert logged[names.LB_LOSS] == pytest.approx((1.5 + 1.0) / 2)
    h_token = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert logged[names.ROUTER_ENTROPY] == pytest.approx(h_token, rel=1e-6)
    assert logged[names.ROUTER_ENTROPY_NORM] == pytest.approx(h_token / math.log(2), rel=1e-6)
    h_load = -(4 / 6 * math.log(4 / 6) + 2 / 6 * math.log(2 / 6))
    assert logged[names.LOAD_ENTROPY] == pytest.approx(h_load, rel=1e-6)
    assert logged[names.Z_LOSS] == pytest.approx(0.0, abs=1e-6)
    assert names.AFFINITY not in logged  # domains=None turns the affinity off


def test_log_to_logs_every_name_with_its_shape_and_resets() -> None:
    stats = RouterStats(num_experts=4, top_k=2, domains=["code", "math", "prose"])
    gen = torch.Generator().manual_seed(0)
    logits = [torch.randn(6, 4, generator=gen) for _ in range(3)]
    stats.update(logits, domain_ids=torch.tensor([0, 1, 2]))  # one id per sequence: 3 sequences of 2 tokens
    run = Recorder()
    logged = stats.log_to(run, step=1)
    for name in names.SCALARS:
        assert isinstance(logged[name], float), name
    shapes = {
        names.UTILIZATION: (3, 4),
        names.TOKENS_PER_EXPERT: (3, 4),
        names.MAXVIO_LAYERS: (3,),
        names.ROUTER_ENTROPY_NORM_LAYERS: (3,),
        names.LOAD_ENTROPY_NORM_LAYERS: (3,),
        names.AFFINITY: (3, 4, 3),
    }
    for name, shape in shapes.items():
        assert isinstance(logged[name], np.ndarray) and logged[name].shape == shape, name
    assert set(logged) == set(names.SCALARS) | set(names.ARRAYS)
    np.testing.assert_allclose(logged[names.UTILIZATION].sum(-1), 1.0, rtol=1e-6)
    assert logged[names.AFFINITY].dtype == np.int64
    assert logged[names.AFFINITY].sum(axis=(1, 2)).tolist() == [12, 12, 12]  # 6 tokens x top-2, per layer
    assert logged[names.AFFINITY][:, :, 0].sum() == 2 * 2 * 3  # domain 0: 2 tokens x 2 slots x 3 layers
    assert run.config["moe"] == {
        "num_experts": 4,
        "top_k": 2,
        "num_layers": 3,
        "domains": ["code", "math", "prose"],
        "lb_convention": "layers=mean;normalize_by_k=true;count=all_k",
    }
    assert stats.num_updates == 0 and stats.compute() == {}
    assert stats.log_to(run, step=2) == {} and len(run.logged) == 1  # an empty window logs nothing


def test_computed_values_survive_the_reset() -> None:
    stats = RouterStats(num_experts=4, top_k=2)
    stats.update([torch.randn(6, 4)], domain_ids=torch.tensor([0, 1, 2, 0, 1, 2]))
    values = stats.compute()
    stats.reset()  # zeroes the accumulators in place
    assert values[names.TOKENS_PER_EXPERT].sum().item() == 12
    assert values[names.AFFINITY].sum().item() == 12


def test_lb_loss_in_stats_equals_the_function_in_each_convention() -> None:
    gen = torch.Generator().manual_seed(3)
    layers = [torch.randn(10, 8, generator=gen) for _ in range(2)]
    mask = torch.rand(10, generator=gen) > 0.3
    for convention in ("default", "megatron", "hf_mixtral", "gshard"):
        stats = RouterStats(8, 2, domains=None, lb_convention=convention)
        stats.update(layers, mask=mask)
        expected = load_balancing_loss(layers, 2, mask=mask, convention=convention)
        assert stats.compute()[names.LB_LOSS].item() == pytest.approx(expected.item(), rel=1e-5)


def test_log_to_makes_exactly_one_device_to_host_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = RouterStats(num_experts=4, top_k=2)
    stats.update([torch.randn(8, 4), torch.randn(8, 4)], domain_ids=torch.tensor([0, 2]))
    calls = {"cpu": 0, "item": 0, "tolist": 0}
    for method in calls:
        original = getattr(torch.Tensor, method)

        def counting(self: torch.Tensor, *args: object, _name: str = method, _orig=original, **kw: object):
            calls[_name] += 1
            return _orig(self, *args, **kw)

        monkeypatch.setattr(torch.Tensor, method, counting)
    stats.log_to(Recorder(), step=0)
    assert calls == {"cpu": 1, "item": 0, "tolist": 0}


@pytest.fixture
def host_sync_forbidden(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any call that reads a tensor's value back to Python raises while the fixture is active."""

    def forbidden(self: torch.Tensor, *args: object, **kwargs: object) -> None:
        raise AssertionError("host sync inside RouterStats.update()")

    for method in ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, method, forbidden)
    yield
    monkeypatch.undo()


def test_update_never_syncs_with_the_host(host_sync_forbidden: None) -> None:
    stats = RouterStats(num_experts=8, top_k=2, domains=["code", "math", "prose"], lb_convention="gshard")
    logits = [torch.randn(4, 16, 8) for _ in range(3)]  # [batch, seq, E] per layer
    mask = torch.ones(4, 16, dtype=torch.bool)
    for _ in range(3):
        stats.update(logits, domain_ids=torch.tensor([0, 1, 2, -1]), mask=mask)
        stats.update(logits)  # without mask and domains too
    assert stats.num_updates == 6


def test_catches_a_host_sync_when_there_is_one(host_sync_forbidden: None) -> None:
    # The fixture itself must bite, or the test above proves nothing.
    with pytest.raises(AssertionError, match="host sync"):
        torch.ones(2).sum().item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_update_never_syncs_on_cuda() -> None:
    device = torch.device("cuda")
    stats = RouterStats(num_experts=8, top_k=2)
    logits = [torch.randn(64, 8, device=device, dtype=torch.bfloat16) for _ in range(4)]
    mask = torch.ones(64, dtype=torch.bool, device=device)
    domains = torch.randint(0, 3, (64,), device=device)
    stats.update(logits, domain_ids=domains, mask=mask)  # first call allocates the window
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            stats.update(logits, domain_ids=domains, mask=mask)
            stats.update(logits)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    logged = stats.log_to(Recorder(), step=0)
    updates, layers, tokens, top_k = 7, 4, 64, 2
    assert logged[names.TOKENS_PER_EXPERT].sum() == updates * layers * tokens * top_k
    assert logged[names.AFFINITY].sum() == 4 * layers * tokens * top_k  # the 4 updates that had domain ids


def test_bf16_and_fp16_logits_accumulate_in_fp32() -> None:
    layer = torch.nn.Linear(16, 8)
    x = torch.randn(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        under_autocast = RouterStats(8, 2, domains=None)
        under_autocast.update([logits, logits])
    reference = RouterStats(8, 2, domains=None)
    reference.update([logits.float(), logits.float()])
    got, want = under_autocast.compute(), reference.compute()
    for name, value in want.items():
        assert got[name].dtype in (torch.float32, torch.int64), name
        torch.testing.assert_close(got[name], value)
    half = RouterStats(8, 2, domains=None)
    half.update([logits.half()])
    assert half.compute()[names.ROUTER_ENTROPY].dtype == torch.float32


def test_update_under_no_grad_and_with_grad_leaves_no_graph() -> None:
    stats = RouterStats(4, 1, domains=None)
    logits = torch.randn(5, 4, requires_grad=True)
    stats.update([logits])
    with torch.no_grad():
        stats.update([logits])
    assert all(not v.requires_grad for v in stats.compute().values())


def test_configuration_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="num_experts"):
        RouterStats(1, 1)
    with pytest.raises(ValueError, match="top_k"):
        RouterStats(4, 5)
    stats = RouterStats(4, 2, num_layers=2)
    with pytest.raises(ValueError, match="2 layers"):
        stats.update([torch.randn(3, 4)])
    with pytest.raises(ValueError, match="4 experts"):
        stats.update([torch.randn(3, 5), torch.randn(3, 5)])
    with pytest.raises(ValueError, match="domain_ids"):
        stats.update([torch.randn(6, 4)] * 2, domain_ids=torch.tensor([0, 1, 2, 0]))


def test_config_is_skipped_for_runs_without_an_assignable_config() -> None:
    class LogOnly:
        def __init__(self) -> None:
            self.steps: list[int] = []

        def log(self, data: dict[str, object], step: int) -> None:
            self.steps.append(step)

    stats = RouterStats(4, 2)
    stats.update([torch.randn(3, 4)])
    run = LogOnly()
    stats.log_to(run, step=5)
    assert run.steps == [5]
