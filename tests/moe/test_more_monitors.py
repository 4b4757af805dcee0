"""The load monitors beyond MaxVio, on hand-computed answers: coefficient of variation of the load, dead experts,
token drop rate at a capacity factor, MaxVio's min/median/max over layers, and the DeepSeek-V3-style expert bias
that watch() logs when the routers carry one (through a real run into a real store)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import expertrack
from expertrack.moe import RouterStats, names, watch
from tests.moe.helpers import Recorder, TinyMoE, logits_from_probs

HOT = [0.7, 0.1, 0.1, 0.1]  # top-1 picks expert 0
SECOND = [0.1, 0.7, 0.1, 0.1]  # top-1 picks expert 1


def test_load_cv_dead_experts_and_maxvio_over_layers() -> None:
    stats = RouterStats(num_experts=4, top_k=1, domains=None)
    layer0 = logits_from_probs([HOT, HOT, HOT, SECOND])  # counts [3, 1, 0, 0]
    layer1 = logits_from_probs([HOT, SECOND, HOT, SECOND])  # counts [2, 2, 0, 0]
    layer2 = logits_from_probs([HOT, SECOND, [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])  # counts [1, 1, 1, 1]
    stats.update([layer0, layer1, layer2])
    logged = stats.log_to(Recorder(), step=0)
    cv = [np.std([3, 1, 0, 0]) / 1.0, np.std([2, 2, 0, 0]) / 1.0, 0.0]  # population sd / mean (mean = 1)
    assert logged[names.LOAD_CV] == pytest.approx(np.mean(cv), rel=1e-6)
    assert logged[names.DEAD_EXPERTS] == 4.0  # two experts in layer 0, two in layer 1, none in layer 2
    maxvio = [(3 - 1) / 1, (2 - 1) / 1, 0.0]
    assert logged[names.MAXVIO_MIN] == pytest.approx(0.0)
    assert logged[names.MAXVIO_MEDIAN] == pytest.approx(1.0)
    assert logged[names.MAXVIO_MAX] == pytest.approx(2.0)
    assert logged[names.MAXVIO] == pytest.approx(np.mean(maxvio))
    assert names.DROP_RATE not in logged  # only with a capacity factor


def test_median_of_an_even_number_of_layers_is_the_mean_of_the_middle_two() -> None:
    stats = RouterStats(num_experts=4, top_k=1, domains=None)
    even = logits_from_probs([HOT, SECOND, [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])  # MaxVio 0
    stats.update([logits_from_probs([HOT] * 4), logits_from_probs([HOT, HOT, HOT, SECOND]), even, even])
    logged = stats.log_to(Recorder(), step=0)
    assert logged[names.MAXVIO_MEDIAN] == pytest.approx((0.0 + 2.0) / 2)  # sorted [0, 0, 2, 3]


def test_drop_rate_at_a_capacity_factor() -> None:
    # 4 tokens, top-1, 4 experts: the even share is 1 slot per expert; capacity_factor 1.0 -> capacity 1.
    stats = RouterStats(num_experts=4, top_k=1, domains=None, capacity_factor=1.0)
    stats.update([logits_from_probs([HOT, HOT, HOT, SECOND])])  # counts [3, 1, 0, 0]: 2 of 4 slots over
    stats.update([logits_from_probs([HOT, SECOND, [0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]])])  # none over
    run = Recorder()
    logged = stats.log_to(run, step=0)
    assert logged[names.DROP_RATE] == pytest.approx(2 / 8)  # over the window's 8 slots
    assert run.config["moe"]["capacity_factor"] == 1.0
    roomy = RouterStats(num_experts=4, top_k=1, domains=None, capacity_factor=2.0)  # capacity 2: 1 slot over
    roomy.update([logits_from_probs([HOT, HOT, HOT, SECOND])])
    assert roomy.log_to(Recorder(), step=0)[names.DROP_RATE] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="capacity_factor must be greater than 0"):
        RouterStats(num_experts=4, top_k=1, capacity_factor=0)


def test_drop_rate_with_top_k_and_padding() -> None:
    # 3 real tokens (one padded), top-2 of 4 experts: 6 slots, capacity ceil(1.0 * 2 * 3 / 4) = 2 per expert.
    probs = [[0.4, 0.3, 0.2, 0.1]] * 4  # every token picks experts 0 and 1
    stats = RouterStats(num_experts=4, top_k=2, domains=None, capacity_factor=1.0)
    stats.update([logits_from_probs(probs)], mask=torch.tensor([1, 1, 1, 0]))
    assert stats.log_to(Recorder(), step=0)[names.DROP_RATE] == pytest.approx(2 / 6)  # 3 - 2 over, twice


class BiasedRouter(torch.nn.Linear):
    """A router with an auxiliary-loss-free balancing bias, as Megatron-LM's routers keep it."""

    def __init__(self, dim: int, experts: int, layer: int) -> None:
        super().__init__(dim, experts, bias=False)
        self.register_buffer("expert_bias", torch.arange(experts, dtype=torch.float32) * 0.01 + layer)


def test_watch_logs_the_expert_bias_into_a_real_run(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TinyMoE(num_experts=4, top_k=2, depth=3)
    for layer, block in enumerate(model.blocks):
        block.router = BiasedRouter(16, 4, layer)
    run = expertrack.init(project="moe", dir=tmp_path, mirror="off")
    with watch(model, domains=None, capacity_factor=1.25) as watcher:
        for step in range(3):
            model(torch.randint(0, 32, (2, 8)))
            model.blocks[1].router.expert_bias += 1.0  # updated in place between steps, as the balancer does
            watcher.log_to(run, step)
    run.finish()
    stored = expertrack.Api(tmp_path).run(run.id)
    steps, bias = stored.arrays(names.EXPERT_BIAS)
    assert steps.tolist() == [0, 1, 2] and bias.shape == (3, 3, 4)
    np.testing.assert_allclose(bias[0, 0], [0.0, 0.01, 0.02, 0.03], rtol=1e-6)
    np.testing.assert_allclose(bias[:, 1, 0], [2.0, 3.0, 4.0])  # layer 1's bias as it was at each log
    for key in (names.LOAD_CV, names.DEAD_EXPERTS, names.MAXVIO_MEDIAN, names.DROP_RATE):
        values = stored.scalars(key)[2]
        assert len(values) == 3 and all(math.isfinite(v) for v in values), key


def test_no_expert_bias_without_one_on_every_router() -> None:
    model = TinyMoE(num_experts=4, top_k=2, depth=2)
    model.blocks[0].router = BiasedRouter(16, 4, 0)  # only one of the two layers has a bias
    run = Recorder()
    with watch(model, domains=None) as watcher:
        model(torch.randint(0, 32, (2, 8)))
        logged = watcher.log_to(run, 0)
    assert names.EXPERT_BIAS not in logged and names.DROP_RATE not in logged
