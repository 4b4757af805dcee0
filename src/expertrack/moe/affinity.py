"""Normalisations of the experts x domains affinity counts, for reports and figures (NumPy only, no torch).

The input is what ``RouterStats`` logs as ``moe/affinity``: token-slot assignment counts A[..., e, d] (any leading
axes, usually [L, E, D] or [steps, L, E, D]); each token contributes one count to each of its top-k experts. Cells
that are undefined (a domain with no tokens, an expert with no assignments) are NaN, so a figure shows them blank
instead of pretending they are 0. Formulas: docs/moe-metrics.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _counts(affinity: Any) -> np.ndarray:
    counts = np.asarray(affinity, dtype=np.float64)
    if counts.ndim < 2:
        raise ValueError(f"affinity must have at least 2 axes [..., experts, domains], got shape {counts.shape}")
    return counts


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def domain_token_fraction(affinity: Any, top_k: int) -> np.ndarray:
    """The fraction of domain d's tokens that have expert e among their top-k: A[e, d] / N_d.

    N_d (the domain's token count) is sum_e A[e, d] / k, since each token fills exactly k slots. Each value is in
    [0, 1]; over experts the values sum to k; with uniform routing every value is k / E. This is what OLMoE plots as
    "domain specialization" per expert and layer (Muennighoff et al. 2024, arXiv:2409.02060, Fig. 22: the share of
    the domain's top-k assignments times k, drawn against a uniform line at k / E).
    """
    counts = _counts(affinity)
    tokens = counts.sum(axis=-2, keepdims=True) / top_k
    return _divide(counts, tokens)


def expert_domain_share(affinity: Any) -> np.ndarray:
    """Each expert's assignments split by domain: A[e, d] / sum_d A[e, d] (sums to 1 over domains)."""
    counts = _counts(affinity)
    return _divide(counts, counts.sum(axis=-1, keepdims=True))


def domain_specialization(affinity: Any, top_k: int) -> np.ndarray:
    """Specialization relative to uniform: OLMoE's domain specialization (:func:`domain_token_fraction`) divided
    by the uniform line k / E its figure draws.

    1 means expert e sees domain d's tokens exactly as often as uniform routing would; E / k (the maximum) means
    every token of the domain goes to e; 0 means none does.
    """
    counts = _counts(affinity)
    num_experts = counts.shape[-2]
    return domain_token_fraction(counts, top_k) * (num_experts / top_k)
