"""Router metrics for PyTorch Mixture-of-Experts models (the ``moe`` extra: torch).

    stats = RouterStats(num_experts=8, top_k=2)          # or: watcher = watch(model, domains=[...])
    stats.update(router_logits_per_layer, domain_ids=d, mask=attention_mask)   # every step, no host sync
    stats.log_to(run, step)                              # every N steps: one transfer, run.log(...), new window

Names are loaded on first use (PEP 562), so ``import expertrack.moe`` and the NumPy-only modules
(``expertrack.moe.names``, ``expertrack.moe.affinity``) do not import torch. Metric definitions and sources:
docs/moe-metrics.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expertrack.moe.affinity import domain_specialization, domain_token_fraction, expert_domain_share
    from expertrack.moe.domain_loss import (
        DomainLoss,
        domain_loss_sums,
        eval_domain_metrics,
        perplexity,
        train_domain_loss,
    )
    from expertrack.moe.hooks import Watcher, find_routers, watch
    from expertrack.moe.losses import LB_CONVENTIONS, LBConvention, load_balancing_loss, router_z_loss
    from expertrack.moe.metrics import (
        affinity_counts,
        expert_utilization,
        load_entropy,
        maxvio,
        router_entropy,
        tokens_per_expert,
    )
    from expertrack.moe.stats import RouterStats

_WHERE = {
    "domain_specialization": "affinity",
    "domain_token_fraction": "affinity",
    "expert_domain_share": "affinity",
    "DomainLoss": "domain_loss",
    "domain_loss_sums": "domain_loss",
    "eval_domain_metrics": "domain_loss",
    "perplexity": "domain_loss",
    "train_domain_loss": "domain_loss",
    "LB_CONVENTIONS": "losses",
    "LBConvention": "losses",
    "load_balancing_loss": "losses",
    "router_z_loss": "losses",
    "affinity_counts": "metrics",
    "expert_utilization": "metrics",
    "load_entropy": "metrics",
    "maxvio": "metrics",
    "router_entropy": "metrics",
    "tokens_per_expert": "metrics",
    "RouterStats": "stats",
    "Watcher": "hooks",
    "find_routers": "hooks",
    "watch": "hooks",
}

__all__ = [
    "LB_CONVENTIONS",
    "DomainLoss",
    "LBConvention",
    "RouterStats",
    "Watcher",
    "affinity_counts",
    "domain_loss_sums",
    "domain_specialization",
    "domain_token_fraction",
    "eval_domain_metrics",
    "expert_domain_share",
    "expert_utilization",
    "find_routers",
    "load_balancing_loss",
    "load_entropy",
    "maxvio",
    "perplexity",
    "router_entropy",
    "router_z_loss",
    "tokens_per_expert",
    "train_domain_loss",
    "watch",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'expertrack.moe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    """The lazily loaded names too (PEP 562), so ``dir()`` and tab completion show them before first use."""
    return sorted({*globals(), *__all__})
