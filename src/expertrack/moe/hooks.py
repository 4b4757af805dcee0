"""watch(model): forward hooks on an MoE model's routers that feed a RouterStats, and come off cleanly.

A hook on each router keeps a reference to that layer's logits (no computation there); a hook on the model itself
hands all layers to ``RouterStats.update()`` once the forward pass ends, so the statistics of one pass are computed
in one batch of device operations. Routers are the modules the caller names, or are found automatically: a module
named ``router``, ``gate``, ``gate_proj`` or ``wg`` whose width (an ``nn.Linear``'s out_features, or its
``num_experts``) equals the number of experts of its parent, an MoE block (a parent with an ``experts`` child or a
``num_experts``-like attribute). That covers HF transformers' Mixtral, Qwen-MoE and OLMoE (``mlp.gate``) and Switch
Transformers (``mlp.router``).

Caveat: statistics are recomputed from the logits as softmax then top-k. Routers that pick experts differently
(sigmoid scores, a per-expert bias as in DeepSeek-V3, capacity dropping) are measured as if they did not. The bias
itself is logged, though: when every router (or its MoE block) carries one (``e_score_correction_bias`` in HF
transformers' DeepSeek-V3, ``expert_bias`` in Megatron-LM), ``log_to`` adds it as ``moe/expert_bias`` [L, E].
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from expertrack.moe import names
from expertrack.moe.losses import LBConvention
from expertrack.moe.stats import RouterStats

ROUTER_NAMES = ("router", "gate", "gate_proj", "wg")
_EXPERT_COUNT_ATTRS = ("num_experts", "num_local_experts", "n_routed_experts")
_TOP_K_ATTRS = ("top_k", "num_experts_per_tok", "k")
_BIAS_ATTRS = ("e_score_correction_bias", "expert_bias")  # auxiliary-loss-free balancing (DeepSeek-V3)


def _router_width(module: nn.Module) -> int | None:
    """How many experts a router module scores, when its structure says so."""
    if isinstance(module, nn.Linear):
        return module.out_features
    count = getattr(module, "num_experts", None)
    if isinstance(count, int):
        return count
    weight = getattr(module, "weight", None)
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None


def _expert_count(block: nn.Module) -> int | None:
    """The number of experts of an MoE block, or None when ``block`` does not look like one."""
    experts = getattr(block, "experts", None)
    if isinstance(experts, (nn.ModuleList, nn.ModuleDict)):
        return len(experts)
    for owner in (experts, block):
        for attr in _EXPERT_COUNT_ATTRS:
            count = getattr(owner, attr, None)
            if isinstance(count, int):
                return count
    return None


def find_routers(model: nn.Module, num_experts: int | None = None) -> list[tuple[str, nn.Module]]:
    """The (name, module) of every router found automatically, in the model's module order."""
    modules = dict(model.named_modules())
    found = []
    for name, module in modules.items():
        parent_name, _, leaf = name.rpartition(".")
        if leaf not in ROUTER_NAMES:
            continue
        experts = _expert_count(modules[parent_name])
        width = _router_width(module)
        if experts is None or width != experts or (num_experts is not None and width != num_experts):
            continue
        found.append((name, module))
    return found


def _named(model: nn.Module, routers: Sequence[str]) -> list[tuple[str, nn.Module]]:
    modules = dict(model.named_modules())
    missing = [name for name in routers if name not in modules]
    if missing:
        raise ValueError(f"watch(): no module named {missing} in the model")
    return [(name, modules[name]) for name in routers]


def _infer_top_k(model: nn.Module, routers: list[tuple[str, nn.Module]]) -> int:
    name, router = routers[0]
    parent = dict(model.named_modules())[name.rpartition(".")[0]]
    config = getattr(model, "config", None)
    for owner in (router, parent, config):
        for attr in _TOP_K_ATTRS:
            value = getattr(owner, attr, None)
            if isinstance(value, int) and value > 0:
                return value
    # Switch Transformers route each token to one expert by design (Fedus et al. 2021, section 2.1), so their
    # config has no top-k field; HF names the router class after it (SwitchTransformersTop1Router).
    if getattr(config, "model_type", None) == "switch_transformers" or type(router).__name__.endswith("Top1Router"):
        return 1
    raise ValueError("watch(): cannot tell top_k from the model; pass top_k=...")


def watch(
    model: nn.Module,
    routers: Sequence[str] | None = None,
    top_k: int | None = None,
    domains: Sequence[str] | None = names.DEFAULT_DOMAINS,
    stats: RouterStats | None = None,
    num_experts: int | None = None,
    lb_convention: str | LBConvention = "default",
    strict: bool = False,
    capacity_factor: float | None = None,
    process_group: Any = None,
) -> Watcher:
    """Hook ``model``'s routers (named in ``routers``, else found automatically) into a :class:`RouterStats`.

    ``top_k`` and ``num_experts`` are read from the model when not given. Pass ``stats`` to use your own
    RouterStats; otherwise one is made with ``domains``, ``lb_convention`` and ``capacity_factor`` (which adds the
    token drop rate at that capacity). With ``strict`` an error while
    collecting statistics raises; by default it is reported once as a warning and counted in ``Watcher.errors``
    (tracking never stops training). ``process_group`` makes the RouterStats sum its windows over that group's
    ranks when it logs (see :class:`RouterStats`).
    """
    found = _named(model, routers) if routers is not None else find_routers(model, num_experts)
    if not found:
        raise ValueError(
            "watch(): found no router (a Linear named router/gate/gate_proj/wg inside a block with experts); "
            "name the router modules with routers=[...]"
        )
    widths = {w for _, module in found if (w := _router_width(module)) is not None}
    if num_experts is None:
        if len(widths) != 1:
            raise ValueError(f"watch(): cannot tell the number of experts (router widths {widths}); pass num_experts")
        num_experts = widths.pop()
    elif widths - {num_experts}:
        raise ValueError(f"watch(): routers score {sorted(widths)} experts, not num_experts={num_experts}")
    if top_k is None:
        top_k = _infer_top_k(model, found)
    if stats is None:
        stats = RouterStats(
            num_experts,
            top_k,
            len(found),
            domains=domains,
            lb_convention=lb_convention,
            capacity_factor=capacity_factor,
            process_group=process_group,
        )
    elif stats.num_experts != num_experts or stats.num_layers not in (None, len(found)):
        raise ValueError(
            f"watch(): stats expects {stats.num_experts} experts and {stats.num_layers} layers; "
            f"the model has {len(found)} routers over {num_experts} experts"
        )
    elif process_group is not None and stats.process_group is not process_group:
        raise ValueError("watch(): pass process_group to the RouterStats you give as stats=, not to watch()")
    return Watcher(model, found, stats, strict)


class Watcher:
    """Hooks attached by :func:`watch`. ``detach()`` removes every one of them, leaving the model as it was."""

    def __init__(self, model: nn.Module, routers: list[tuple[str, nn.Module]], stats: RouterStats, strict: bool):
        self.model = model
        self.stats = stats
        self.routers = [name for name, _ in routers]
        self.strict = strict
        self.enabled = True
        self.errors = 0
        self._layers: list[torch.Tensor | None] = [None] * len(routers)
        self._domain_ids: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None
        self._biases = _bias_owners(model, routers, stats.num_experts)
        self._handles = [module.register_forward_hook(self._router_hook(i)) for i, (_, module) in enumerate(routers)]
        self._handles.append(model.register_forward_pre_hook(self._begin_pass))
        self._handles.append(model.register_forward_hook(self._end_pass))

    def set_domains(self, domain_ids: torch.Tensor | None, mask: torch.Tensor | None = None) -> None:
        """Domain ids (per token, or per sequence) and padding mask for the forward passes that follow."""
        self._domain_ids = domain_ids
        self._mask = mask

    def set_mask(self, mask: torch.Tensor | None) -> None:
        """Padding mask ([batch, seq] or [T], True/1 = real token) for the forward passes that follow."""
        self._mask = mask

    @contextmanager
    def batch(self, domain_ids: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> Iterator[None]:
        """Set domain ids and mask for the forward passes inside the block; cleared on exit."""
        self.set_domains(domain_ids, mask)
        try:
            yield
        finally:
            self.set_domains(None, None)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Forward passes inside the block are not recorded (e.g. an evaluation you track separately)."""
        enabled, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = enabled

    def log_to(self, run: Any, step: int) -> dict[str, Any]:
        """``self.stats.log_to(run, step)``: log the window's router metrics and start a new window; with the
        routers' balancing biases as ``moe/expert_bias`` [L, E] when the model has them (same single copy)."""
        extra = None
        if self._biases:
            with torch.no_grad():
                rows = [getattr(owner, attr).detach().float().reshape(-1) for owner, attr in self._biases]
                extra = {names.EXPERT_BIAS: torch.stack(rows)}
        return self.stats.log_to(run, step, extra=extra)

    def flush(self) -> None:
        """Hand the logits collected so far to the stats (done automatically when the model's forward ends)."""
        layers, self._layers = self._layers, [None] * len(self._layers)
        if all(layer is None for layer in layers):
            return
        present = [layer for layer in layers if layer is not None]
        if len(present) != len(layers):
            missing = [self.routers[i] for i, layer in enumerate(layers) if layer is None]
            self._report(RuntimeError(f"routers {missing} did not run in this forward pass"))
            return
        try:
            self.stats.update(present, domain_ids=self._domain_ids, mask=self._mask)
        except Exception as err:  # the tracker's outer boundary (DESIGN rule 1): never break a training step
            self._report(err)

    def detach(self) -> None:
        """Remove every hook; the model's hook dictionaries are back to what they were before ``watch``."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._layers = [None] * len(self._layers)

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _router_hook(self, layer: int) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self.enabled:
                self._layers[layer] = self._logits(output, layer)

        return hook

    def _begin_pass(self, module: nn.Module, args: Any) -> None:
        # Logits left over from outside a full forward (a sub-module called alone, activation-checkpoint
        # recomputation during backward) must not mix into this pass.
        self._layers = [None] * len(self._layers)

    def _end_pass(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.enabled:
            self.flush()

    def _logits(self, output: Any, layer: int) -> torch.Tensor | None:
        """The router's logits: its output, or the first floating tensor of width E in a tuple output."""
        candidates = output if isinstance(output, (tuple, list)) else (output,)
        for value in candidates:
            if (
                isinstance(value, torch.Tensor)
                and value.is_floating_point()
                and value.shape[-1:] == (self.stats.num_experts,)
            ):
                return value.detach()
        self._report(TypeError(f"router {self.routers[layer]!r} returned no [..., E] floating tensor"))
        return None

    def _report(self, err: Exception) -> None:
        if self.strict:
            raise err
        self.errors += 1
        if self.errors == 1:
            warnings.warn(
                f"expertrack.moe: router statistics skipped for a forward pass: {err}. "
                "Later errors are only counted (watcher.errors).",
                RuntimeWarning,
                stacklevel=3,
            )


def _bias_owners(model: nn.Module, routers: list[tuple[str, nn.Module]], experts: int) -> list[tuple[nn.Module, str]]:
    """(module, attribute) holding each router's balancing bias [E], looked up on the router, then its block;
    [] unless every router has one (a partial [L', E] would not say which layers it is)."""
    modules = dict(model.named_modules())
    owners = []
    for name, router in routers:
        parent = modules[name.rpartition(".")[0]]
        found = next(
            (
                (owner, attr)
                for owner in (router, parent)
                for attr in _BIAS_ATTRS
                if isinstance(getattr(owner, attr, None), torch.Tensor) and getattr(owner, attr).numel() == experts
            ),
            None,
        )
        if found is None:
            return []
        owners.append(found)
    return owners
