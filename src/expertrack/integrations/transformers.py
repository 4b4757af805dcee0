"""HF transformers: ``ExpertrackCallback``, a ``TrainerCallback`` that records a Trainer's run.

    from expertrack.integrations.transformers import ExpertrackCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[ExpertrackCallback(project="moe")])

What is recorded, on the world's process zero only (other ranks do nothing):

* config: ``{"args": TrainingArguments.to_dict(), "model": model.config.to_dict(), "model/num_parameters": n}``;
* every ``on_log`` at ``state.global_step``, named as the Trainer's W&B callback names them (``loss`` becomes
  ``train/loss``, ``eval_loss`` becomes ``eval/loss``, ``test_*`` becomes ``test/*``), so runs read the same
  whichever way they were recorded; ``predict()``'s metrics too;
* the end-of-training figures (``train_runtime``, ``train_loss``, ...) also as summary values;
* router metrics (``expertrack.moe``: load balance, entropy, per-expert utilization, ...) when the model is a
  Mixture-of-Experts model whose routers ``expertrack.moe.watch`` finds (Mixtral, Qwen-MoE, OLMoE, Switch),
  from training forward passes only, logged with each ``on_log``; ``router_metrics=False`` turns this off.

The run is the current one if ``expertrack.init()`` was called, else one this callback starts at the beginning of
training (one per Trainer: a run an earlier callback started is finished first). It is left open after ``train()``
so a later ``evaluate()`` lands in it; it is finished at exit (as failed if the process fails) or by
``expertrack.finish()``. Importing this module imports transformers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

import expertrack
from expertrack.integrations._runs import run_for

__all__ = ["ExpertrackCallback", "metric_names"]

# logged once at the end of train(); the Trainer's W&B callback keeps them as summary values, so do we
END_OF_TRAINING = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


def metric_names(logs: Mapping[str, Any]) -> dict[str, Any]:
    """The Trainer's log keys as its W&B callback names them: ``eval_x`` -> ``eval/x``, ``test_x`` -> ``test/x``,
    anything else ``train/x``."""
    named = {}
    for key, value in logs.items():
        for prefix in ("eval", "test"):
            if key.startswith(prefix + "_"):
                named[f"{prefix}/{key[len(prefix) + 1 :]}"] = value
                break
        else:
            named[f"train/{key}"] = value
    return named


class ExpertrackCallback(TrainerCallback):  # type: ignore[misc]
    """Records a ``transformers.Trainer`` run into expertrack (see the module docstring).

    Arguments other than ``router_metrics`` and ``router_domains`` are passed to ``expertrack.init`` when this
    callback starts the run (``project`` defaults to ``$WANDB_PROJECT``, else "huggingface", as the Trainer's W&B
    callback does; ``name`` to ``TrainingArguments.run_name``).
    """

    def __init__(
        self,
        project: str | None = None,
        name: str | None = None,
        *,
        router_metrics: bool = True,
        router_domains: Sequence[str] | None = None,
        **init_kwargs: Any,
    ) -> None:
        self._project = project
        self._name = name
        self._init_kwargs = init_kwargs
        self._router_metrics = router_metrics
        self._router_domains = router_domains
        self._run: expertrack.Run | None = None
        self._watcher: Any = None

    @property
    def watcher(self) -> Any:
        """The ``expertrack.moe.Watcher`` on the model's routers during training (None for a dense model, before
        training, or with ``router_metrics=False``): ``callback.watcher.set_domains(ids)`` in a data collator or
        a ``compute_loss`` feeds the experts x domains affinity of ``router_domains``."""
        return self._watcher

    # ---- the Trainer's events ---------------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Start (or join) the run, record the config, and watch the model's routers when it has any."""
        if not state.is_world_process_zero:
            return
        run = self._ensure_run(args)
        run.config.update(_config(args, model))
        if self._router_metrics and model is not None and self._watcher is None:
            self._watcher = _watch_routers(model, self._router_domains, run)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Router statistics come from training forward passes only: on from here to ``on_step_end``."""
        if self._watcher is not None:
            self._watcher.enabled = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Evaluation runs after the step: its forward passes must not count as training routing."""
        if self._watcher is not None:
            self._watcher.enabled = False

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Log what the Trainer logged at ``state.global_step`` (and the router metrics of the window)."""
        if not state.is_world_process_zero or not logs:
            return
        run = self._ensure_run(args)
        step = int(state.global_step)
        run.log(metric_names(logs), step=step)
        for key in END_OF_TRAINING:
            if key in logs:
                run.summary[f"train/{key}"] = logs[key]
        if self._watcher is not None:
            self._log_router_metrics(run, step)

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any], **kwargs: Any) -> None:
        """``Trainer.predict()``'s metrics, which the Trainer does not pass to ``on_log``."""
        if state.is_world_process_zero and metrics:
            self._ensure_run(args).log(metric_names(metrics), step=int(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Take the router hooks off the model and write what was logged (the run stays open for a later
        ``evaluate()``; see the module docstring)."""
        if self._watcher is not None:  # its last window was logged by the final on_log, just before
            self._watcher.detach()
            self._watcher = None
        if state.is_world_process_zero and self._run is not None:
            self._run.flush(timeout=10.0)

    # ---- plumbing ---------------------------------------------------------------------------------------------

    def _log_router_metrics(self, run: expertrack.Run, step: int) -> None:
        try:
            self._watcher.log_to(run, step)
        except Exception as err:  # the tracker's outer boundary (DESIGN rule 1): training goes on without them
            run.notifier.once(
                "hf-router-log", f"ExpertrackCallback: router metrics stopped ({type(err).__name__}: {err})"
            )
            self._watcher.detach()
            self._watcher = None

    def _ensure_run(self, args: Any) -> expertrack.Run:
        """This callback's run (see ``integrations._runs.run_for``: one run per Trainer in a script)."""
        run = run_for(
            self._run,
            lambda: expertrack.init(
                project=self._project or os.environ.get("WANDB_PROJECT") or "huggingface",
                name=self._name or getattr(args, "run_name", None),
                **self._init_kwargs,
            ),
        )
        self._run = run
        return run


def _config(args: Any, model: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"args": args.to_dict()}
    model_config = getattr(model, "config", None)
    if model_config is not None:
        config["model"] = model_config if isinstance(model_config, dict) else model_config.to_dict()
    if hasattr(model, "num_parameters"):
        config["model/num_parameters"] = int(model.num_parameters())
    return config


def _watch_routers(model: Any, domains: Sequence[str] | None, run: expertrack.Run) -> Any:
    """``expertrack.moe.watch(model)`` when the model has routers it can find; None for a dense model."""
    from expertrack.moe import find_routers, watch

    if not find_routers(model):
        return None
    try:
        watcher = watch(model, domains=domains)
    except ValueError as err:  # routers found but their shape is unclear: say so, train on without them
        run.notifier.once("hf-routers", f"ExpertrackCallback: router metrics off ({err})")
        return None
    watcher.enabled = False  # until the first training step begins
    return watcher
