"""The HF Trainer, for real (a tiny Mixtral or Llama built from a config, random tokens, six steps on CPU):
with ``ExpertrackCallback``, and through ``report_to="wandb"`` under the ``import wandb`` stand-in."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from .training import logged, series, the_run, train_as_wandb, train_natively

pytest.importorskip("transformers")
pytestmark = pytest.mark.e2e

END_OF_TRAINING = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")


def hf_name(key: str) -> str:
    """The Trainer's W&B naming, which the callback follows: eval_x -> eval/x, anything else train/x."""
    return "eval/" + key[5:] if key.startswith("eval_") else "train/" + key


@pytest.fixture(scope="module")
def native_moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("hf-native")
    train_natively("hf_train.py", workdir, "--moe")
    return workdir


@pytest.fixture(scope="module")
def through_wandb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("hf-wandb")
    # WANDB_LOG_MODEL: the callback also builds model artifacts, which expertrack cannot store (said once)
    proc = train_as_wandb("hf_train.py", workdir, WANDB_LOG_MODEL="end")
    (workdir / "stderr.txt").write_text(proc.stderr)
    return workdir


def test_callback_stores_every_logged_value_at_its_global_step(native_moe: Path) -> None:
    run = the_run(native_moe / "runs")
    history: list[dict[str, Any]] = logged(native_moe)
    assert any("eval_loss" in entry for entry in history) and any("loss" in entry for entry in history)
    checked = 0
    for entry in history:
        for key, value in entry.items():
            if key != "step":
                assert series(run, hf_name(key))[entry["step"]] == pytest.approx(value), (key, entry["step"])
                checked += 1
    assert checked >= 20
    assert run.state == "finished" and run.name == "tiny-hf" and run.project == "hf"


def test_callback_stores_the_training_arguments_and_model_config_and_end_summary(native_moe: Path) -> None:
    run = the_run(native_moe / "runs")
    assert run.config["args"]["learning_rate"] == pytest.approx(1e-3)
    assert run.config["args"]["max_steps"] == 6
    assert run.config["model"]["num_local_experts"] == 4 and run.config["model"]["hidden_size"] == 16
    assert run.config["model/num_parameters"] > 0
    final = logged(native_moe)[-1]
    for key in END_OF_TRAINING:
        assert run.summary[f"train/{key}"] == pytest.approx(final[key])


def test_a_tiny_mixtral_gets_router_metrics_with_no_code_from_the_user(native_moe: Path) -> None:
    run = the_run(native_moe / "runs")
    # two layers of four experts, top-2: each on_log logs the router metrics of the training passes since the last
    log_steps = {entry["step"] for entry in logged(native_moe)}
    lb = series(run, "moe/lb_loss")
    assert {2, 4, 6} <= set(lb) <= log_steps
    assert all(math.isfinite(v) and v > 0 for v in lb.values())
    steps, utilization = run.arrays("moe/utilization")
    assert list(steps) == sorted(lb) and utilization.shape[1:] == (2, 4)
    assert utilization.sum(axis=-1) == pytest.approx(1.0)  # per layer, the shares of routed slots
    # training passes only: 6 steps x 4 sequences x 16 tokens, top-2, in each of 2 layers; evaluation not counted
    _, tokens = run.arrays("moe/tokens_per_expert")
    assert tokens.sum() == 6 * 4 * 16 * 2 * 2
    assert run.config["moe"]["num_experts"] == 4 and run.config["moe"]["top_k"] == 2


def test_report_to_wandb_under_the_stand_in_stores_every_logged_value(through_wandb: Path) -> None:
    # the Trainer's own W&B callback, unchanged: one wandb.log per on_log, its x-axis is train/global_step
    run = the_run(through_wandb / "chosen")
    history: list[dict[str, Any]] = logged(through_wandb)
    rows = [entry for entry in history if "train_runtime" not in entry]
    global_step = series(run, "train/global_step")
    assert [global_step[i] for i in range(len(rows))] == [entry["step"] for entry in rows]
    for i, entry in enumerate(rows):
        for key, value in entry.items():
            if key != "step":
                assert series(run, hf_name(key))[i] == pytest.approx(value), (key, i)
    final = history[-1]
    for key in END_OF_TRAINING:
        assert run.summary[key] == pytest.approx(final[key])  # the callback sets these as summary values
    assert run.config["learning_rate"] == pytest.approx(1e-3) and run.config["model/num_parameters"] > 0
    assert run.state == "finished" and run.name == "tiny-hf" and run.project == "huggingface"


def tiny_trainer(model: Any, callback: Any, output_dir: Path) -> Any:
    import torch
    from transformers import Trainer, TrainingArguments

    ids = torch.randint(0, 64, (8, 8))
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=2,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    dataset = [{"input_ids": row, "labels": row} for row in ids]
    return Trainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])


@pytest.mark.parametrize("moe", [True, False], ids=["mixtral-opted-out", "dense-llama"])
def test_no_router_metrics_when_turned_off_or_for_a_dense_model(tmp_path: Path, moe: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM

    import expertrack
    from expertrack.integrations.transformers import ExpertrackCallback

    sizes = dict(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = (
        MixtralForCausalLM(MixtralConfig(num_local_experts=4, num_experts_per_tok=2, **sizes))
        if moe
        else LlamaForCausalLM(LlamaConfig(**sizes))
    )
    callback = ExpertrackCallback(project="hf", dir=tmp_path / "runs", mirror="off", router_metrics=not moe)
    tiny_trainer(model, callback, tmp_path / "out").train()
    expertrack.finish()
    run = the_run(tmp_path / "runs")
    assert sorted(series(run, "train/loss")) == [1, 2]
    assert not [key for key in run.metric_keys() + run.array_keys() if key.startswith("moe/")]
    assert "moe" not in run.config


def test_model_artifacts_from_the_trainer_are_said_once_and_training_goes_on(through_wandb: Path) -> None:
    err = (through_wandb / "stderr.txt").read_text()
    assert err.count("log_artifact(): W&B artifacts are not stored by expertrack") == 1
    assert the_run(through_wandb / "chosen").state == "finished"


def test_two_trainers_in_one_script_get_a_run_each_with_all_their_steps(tmp_path: Path) -> None:
    # dense, then MoE, in one script: the second Trainer's steps start at 0 again and must not be refused
    from transformers import LlamaConfig, LlamaForCausalLM

    import expertrack
    from expertrack.integrations.transformers import ExpertrackCallback

    sizes = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    for name in ("first", "second"):
        callback = ExpertrackCallback(project="hf", name=name, dir=tmp_path / "runs", mirror="off")
        tiny_trainer(LlamaForCausalLM(LlamaConfig(**sizes)), callback, tmp_path / name).train()
    expertrack.finish()
    runs = {run.name: run for run in expertrack.Api(tmp_path / "runs").runs()}
    assert sorted(runs) == ["first", "second"]
    for run in runs.values():
        assert sorted(series(run, "train/loss")) == [1, 2] and run.state == "finished"


def test_a_run_started_by_the_user_is_joined_not_replaced(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    import expertrack
    from expertrack.integrations.transformers import ExpertrackCallback

    run = expertrack.init(project="mine", name="by-hand", dir=tmp_path / "runs", mirror="off", config={"seed": 1})
    sizes = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    tiny_trainer(LlamaForCausalLM(LlamaConfig(**sizes)), ExpertrackCallback(), tmp_path / "out").train()
    run.finish()
    stored = the_run(tmp_path / "runs")
    assert stored.id == run.id and stored.config["seed"] == 1 and "args" in stored.config
    assert sorted(series(stored, "train/loss")) == [1, 2]


def test_domains_handed_to_the_callbacks_watcher_give_the_affinity_matrix(tmp_path: Path) -> None:
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM, Trainer, TrainingArguments

    import expertrack
    from expertrack.integrations.transformers import ExpertrackCallback

    callback = ExpertrackCallback(
        project="hf", dir=tmp_path / "runs", mirror="off", router_domains=["code", "math", "prose"]
    )

    class DomainTrainer(Trainer):  # the user's own compute_loss, as when a batch carries its domain
        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            domains = inputs.pop("domain")
            callback.watcher.set_domains(domains)
            return super().compute_loss(model, inputs, *args, **kwargs)

    sizes = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    model = MixtralForCausalLM(
        MixtralConfig(num_local_experts=4, num_experts_per_tok=2, num_key_value_heads=2, **sizes)
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    ids = torch.randint(0, 64, (8, 8))
    dataset = [{"input_ids": row, "labels": row, "domain": torch.tensor(i % 3)} for i, row in enumerate(ids)]
    trainer = DomainTrainer(model=model, args=args, train_dataset=dataset, callbacks=[callback])
    trainer.train()
    expertrack.finish()
    steps, affinity = the_run(tmp_path / "runs").arrays("moe/affinity")
    assert list(steps) == [1, 2] and affinity.shape[1:] == (1, 4, 3)  # layers x experts x domains
    assert affinity.sum() == 2 * 4 * 8 * 2  # every routed slot of both steps, by domain
