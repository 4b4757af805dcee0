"""The metric names ``expertrack.moe`` logs: fixed, because the demo, the figures and the dashboard read them.

Shapes and formulas are in docs/moe-metrics.md. This module imports nothing heavy, so readers of a store (figures,
dashboard) can use the names without torch.
"""

from __future__ import annotations

PREFIX = "moe/"

# Scalars: each is the mean over layers of a per-layer value (moe/lb_loss follows its convention, see losses.py).
LB_LOSS = "moe/lb_loss"
Z_LOSS = "moe/z_loss"
MAXVIO = "moe/maxvio"
ROUTER_ENTROPY = "moe/router_entropy"
ROUTER_ENTROPY_NORM = "moe/router_entropy_norm"
LOAD_ENTROPY = "moe/load_entropy"
LOAD_ENTROPY_NORM = "moe/load_entropy_norm"
LOAD_CV = "moe/load_cv"  # coefficient of variation of the window's load over experts, mean over layers
DEAD_EXPERTS = "moe/dead_experts"  # (layer, expert) pairs that received no token in the window
MAXVIO_MIN = "moe/maxvio_min"  # min / median / max over layers of moe/maxvio_layers
MAXVIO_MEDIAN = "moe/maxvio_median"
MAXVIO_MAX = "moe/maxvio_max"
SCALARS = (
    LB_LOSS,
    Z_LOSS,
    MAXVIO,
    ROUTER_ENTROPY,
    ROUTER_ENTROPY_NORM,
    LOAD_ENTROPY,
    LOAD_ENTROPY_NORM,
    LOAD_CV,
    DEAD_EXPERTS,
    MAXVIO_MIN,
    MAXVIO_MEDIAN,
    MAXVIO_MAX,
)
DROP_RATE = "moe/drop_rate"  # only with RouterStats(capacity_factor=...): token slots over capacity, mean of layers
# Logged only when RouterStats reduces over a process group: max over ranks of each rank's own MaxVio.
MAXVIO_RANK_MAX = "moe/maxvio_rank_max"

# Arrays (L = layers, E = experts, D = domains).
UTILIZATION = "moe/utilization"  # [L, E] fractions of token-slot assignments, rows sum to 1
TOKENS_PER_EXPERT = "moe/tokens_per_expert"  # [L, E] counts of token-slot assignments
MAXVIO_LAYERS = "moe/maxvio_layers"  # [L]
ROUTER_ENTROPY_NORM_LAYERS = "moe/router_entropy_norm_layers"  # [L]
LOAD_ENTROPY_NORM_LAYERS = "moe/load_entropy_norm_layers"  # [L]
AFFINITY = "moe/affinity"  # [L, E, D] counts of token-slot assignments per layer, expert, domain
ARRAYS = (
    UTILIZATION,
    TOKENS_PER_EXPERT,
    MAXVIO_LAYERS,
    ROUTER_ENTROPY_NORM_LAYERS,
    LOAD_ENTROPY_NORM_LAYERS,
    AFFINITY,
)

EXPERT_BIAS = "moe/expert_bias"  # [L, E], logged by watch() when the routers carry a balancing bias (DeepSeek-V3)

# Per-domain language-model losses (helpers in domain_loss.py build dicts with exactly these keys).
TRAIN_DOMAIN_LOSS = "train/domain_loss/"  # + domain name
EVAL_LOSS = "eval/loss/"  # + domain name
EVAL_PPL = "eval/ppl/"  # + domain name

CONFIG_KEY = "moe"  # run.config["moe"] = {"num_experts", "top_k", "num_layers", "domains", "lb_convention"}

DEFAULT_DOMAINS = ("code", "math", "prose")
