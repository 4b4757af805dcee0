"""Experts x domains affinity (counts and normalisations) and per-domain loss / perplexity helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from expertrack.moe import (
    DomainLoss,
    affinity_counts,
    domain_specialization,
    domain_token_fraction,
    eval_domain_metrics,
    expert_domain_share,
    train_domain_loss,
)
from tests.moe.helpers import logits_from_probs

# Two tokens, E=4, top-2: token 0 (code) -> experts {0, 1}; token 1 (math) -> experts {0, 3}.
LOGITS = logits_from_probs([[0.4, 0.3, 0.2, 0.1], [0.4, 0.1, 0.2, 0.3]])
# Counts A[e, d] over domains (code, math, prose):
#   e0 [1, 1, 0]   e1 [1, 0, 0]   e2 [0, 0, 0]   e3 [0, 1, 0]
EXPECTED = [[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]]
NAN = float("nan")


def test_affinity_counts_by_hand() -> None:
    counts = affinity_counts(LOGITS, torch.tensor([0, 1]), num_domains=3, top_k=2)
    assert counts.tolist() == EXPECTED
    layered = affinity_counts([LOGITS, LOGITS], torch.tensor([0, 1]), num_domains=3, top_k=2)
    assert layered.shape == (2, 4, 3)


def test_affinity_skips_masked_tokens_and_unknown_domains() -> None:
    assert affinity_counts(LOGITS, torch.tensor([0, -1]), 3, 2).tolist() == [[1, 0, 0], [1, 0, 0], [0] * 3, [0] * 3]
    assert affinity_counts(LOGITS, torch.tensor([0, 7]), 3, 2).sum() == 2
    masked = affinity_counts(LOGITS, torch.tensor([0, 1]), 3, 2, mask=torch.tensor([False, True]))
    assert masked.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]]


def test_one_domain_id_per_sequence_is_repeated_over_the_sequence() -> None:
    logits = torch.cat([LOGITS, LOGITS])  # 2 sequences x 2 tokens
    per_sequence = affinity_counts(logits, torch.tensor([2, 0]), 3, 2)
    per_token = affinity_counts(logits, torch.tensor([2, 2, 0, 0]), 3, 2)
    assert per_sequence.tolist() == per_token.tolist()


def test_normalisations_by_hand() -> None:
    counts = np.array(EXPECTED)
    # code has 1 token: e0 and e1 each see it; math has 1 token: e0 and e3; prose has none (undefined -> NaN)
    np.testing.assert_array_equal(
        domain_token_fraction(counts, top_k=2), [[1, 1, NAN], [1, 0, NAN], [0, 0, NAN], [0, 1, NAN]]
    )
    np.testing.assert_array_equal(expert_domain_share(counts), [[0.5, 0.5, 0], [1, 0, 0], [NAN, NAN, NAN], [0, 1, 0]])
    # relative to uniform k/E = 1/2: fraction * 2
    np.testing.assert_array_equal(
        domain_specialization(counts, top_k=2), [[2, 2, NAN], [2, 0, NAN], [0, 0, NAN], [0, 2, NAN]]
    )


def test_normalisations_keep_leading_axes_and_uniform_gives_one() -> None:
    uniform = np.full((5, 2, 8, 3), 10)  # [steps, layers, experts, domains]
    np.testing.assert_allclose(domain_specialization(uniform, top_k=2), 1.0)
    np.testing.assert_allclose(domain_token_fraction(uniform, top_k=2).sum(axis=-2), 2.0)  # sums to k
    np.testing.assert_allclose(expert_domain_share(uniform).sum(axis=-1), 1.0)
    with pytest.raises(ValueError, match="at least 2 axes"):
        expert_domain_share(np.zeros(3))


def test_train_domain_loss_by_hand() -> None:
    losses = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    domains = torch.tensor([[0, 0], [1, -1]])  # the last token has no domain
    assert train_domain_loss(losses, domains, ["code", "math", "prose"]) == {
        "train/domain_loss/code": 1.5,
        "train/domain_loss/math": 3.0,
    }
    mask = torch.tensor([[1, 0], [1, 1]])  # e.g. labels != -100
    assert train_domain_loss(losses, domains, ["code", "math", "prose"], mask=mask)["train/domain_loss/code"] == 1.0
    per_sequence = train_domain_loss(losses, torch.tensor([2, 0]), ["code", "math", "prose"])
    assert per_sequence == {"train/domain_loss/code": 3.5, "train/domain_loss/prose": 1.5}


def test_eval_loss_and_perplexity_over_several_batches() -> None:
    acc = DomainLoss(["code", "math", "prose"])
    acc.update(torch.tensor([1.0, 3.0]), torch.tensor([0, 1]))
    acc.update(torch.tensor([2.0, float("nan")]), torch.tensor([0, 1]), mask=torch.tensor([True, False]))
    metrics = acc.eval_metrics()
    assert metrics == pytest.approx(
        {"eval/loss/code": 1.5, "eval/ppl/code": math.exp(1.5), "eval/loss/math": 3.0, "eval/ppl/math": math.exp(3)}
    )
    assert acc.train_metrics() == pytest.approx({"train/domain_loss/code": 1.5, "train/domain_loss/math": 3.0})
    acc.reset()
    assert acc.eval_metrics() == {}
    direct = eval_domain_metrics(np.array([3.0, 0.0]), np.array([2.0, 0.0]), ["code", "math"])
    assert direct == pytest.approx({"eval/loss/code": 1.5, "eval/ppl/code": math.exp(1.5)})
