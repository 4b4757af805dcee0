"""Format details the transcripts do not pin: step rules, placeholders, tables, blocks, generic pairs."""

from __future__ import annotations

import itertools
import math

import pytest

from expertrack.capture.parsers import ConfigItems, Item, Metrics, get_parser
from expertrack.capture.parsers.base import MAX_HELD_STEPLESS

CUDA_STEP = "step %4d/%d | loss %s (%sz)| norm %s (%sz)| lr 3.00e-04 | 412.87 ms | %s%% bf16 MFU | 39684 tok/s"


def feed_all(name: str, lines: list[str], finish: bool = True) -> list[Item]:
    parser = get_parser(name)
    items: list[Item] = []
    for line in lines:
        items.extend(parser.feed(line))
    if finish:
        items.extend(parser.finish())
    return items


def metrics(items: list[Item]) -> list[tuple[int, dict[str, float]]]:
    return [(item.step, item.values) for item in items if isinstance(item, Metrics)]


def config(items: list[Item]) -> dict[str, object]:
    merged: dict[str, object] = {}
    for item in items:
        if isinstance(item, ConfigItems):
            merged.update(item.values)
    return merged


# --- llm.c family -------------------------------------------------------------------------------------------


def test_resumed_llmc_run_puts_its_first_val_loss_at_the_resumed_step() -> None:
    """A resumed run's loop starts at its checkpoint's step; the val loss printed first belongs there."""
    lines = ["val loss 3.100000", CUDA_STEP % (5001, 10000, "3.000000", "+0.10", "1.0000", "-0.20", "40.0")]
    result = metrics(feed_all("llmc", lines))
    assert [step for step, _ in result] == [5000, 5000]
    assert result[0][1] == {"val_loss": 3.1}


def test_evaluations_of_a_run_without_train_lines_land_at_step_zero_on_finish() -> None:
    parser = get_parser("llmc")
    assert parser.feed("val loss 4.000000") == []
    assert parser.feed("HellaSwag: 250/1000 = 0.250000") == []
    assert [(m.step, m.values) for m in parser.finish() if isinstance(m, Metrics)] == [
        (0, {"val_loss": 4.0}),
        (0, {"hellaswag_acc": 0.25}),
    ]
    assert parser.finish() == []


def test_cpu_trainer_val_loss_goes_one_past_the_last_printed_step() -> None:
    lines = ["step 0: train loss 5.0 (took 1.0 ms)", "step 1: train loss 4.0 (took 1.0 ms)", "val loss 4.5"]
    assert metrics(feed_all("llmc", lines))[-1] == (2, {"val_loss": 4.5})


@pytest.mark.parametrize(
    ("z", "expected"),
    [("+nan", None), ("-nan", None), ("+inf", math.inf), ("-1.25", -1.25), ("+0.00", 0.0)],
)
def test_z_score_placeholders(z: str, expected: float | None) -> None:
    ((step, values),) = metrics(feed_all("llmc", [CUDA_STEP % (1, 8, "3.000000", z, "1.0000", z, "40.0")]))
    assert step == 0
    if expected is None:
        assert "train_loss_z" not in values and "grad_norm_z" not in values
    else:
        assert values["train_loss_z"] == expected and values["grad_norm_z"] == expected


@pytest.mark.parametrize(("mfu", "logged"), [("-100.0", False), ("-0.5", False), ("0.0", True), ("51.3", True)])
def test_negative_mfu_is_unknown_and_not_logged(mfu: str, logged: bool) -> None:
    ((_, values),) = metrics(feed_all("llmc", [CUDA_STEP % (1, 8, "3.000000", "+nan", "1.0000", "+nan", mfu)]))
    assert ("mfu_pct" in values) is logged
    if logged:
        assert values["mfu_pct"] == float(mfu)


def test_nan_and_inf_losses_are_values_not_placeholders() -> None:
    lines = [
        CUDA_STEP % (1, 8, "    nan", "+nan", "   nan", "+nan", "40.0"),
        CUDA_STEP % (2, 8, "   -nan", "+nan", "   inf", "+nan", "40.0"),
        "step    3/8: train loss -inf (12.3 ms, inf tok/s)",
        "val loss nan (avg_train inf, gap -nan)",
        "test loss -inf",
    ]
    result = metrics(feed_all("llmc", lines))
    assert [step for step, _ in result] == [0, 1, 2, 3, 3]
    assert math.isnan(result[0][1]["train_loss"]) and math.isnan(result[0][1]["grad_norm"])
    assert math.isnan(result[1][1]["train_loss"]) and result[1][1]["grad_norm"] == math.inf
    assert result[2][1]["train_loss"] == -math.inf and result[2][1]["tok_per_sec"] == math.inf
    assert math.isnan(result[3][1]["val_loss"]) and result[3][1]["avg_train_loss"] == math.inf
    assert math.isnan(result[3][1]["generalization_gap"])
    assert result[4][1] == {"test_loss": -math.inf}


def test_printed_step_zero_of_a_one_based_counter_stays_at_zero() -> None:
    assert metrics(feed_all("gpt2-cuda", ["step    0/10: train loss 1.0 (1.0 ms, 1 tok/s)"]))[0][0] == 0


def test_table_values_wider_than_their_column_or_holding_bars_are_kept_whole() -> None:
    long_path = "dev/data/" + "x" * 80 + ".bin"
    lines = [
        f"| train data pattern    | {long_path:<50} |",
        "| odd value             | a | b                                              |",
        "| parameter | value |",
        "|-----------|-------|",
        "| :--- | ---: |",
        "| Zero Optimization is disabled                                              |",
        "|  |  |",
        "| empty value | |",
    ]
    assert config(feed_all("llmc", lines)) == {
        "train data pattern": long_path,
        "odd value": "a | b",
        "empty value": "",
    }


def test_table_values_become_numbers_where_they_plainly_are() -> None:
    rows = [("a", "4703"), ("b", "3.000000e-04"), ("c", "-1.0"), ("d", "nan"), ("e", "enabled"), ("f", "NULL")]
    items = feed_all("gpt2-cuda", [f"| {key:<21} | {value:<50} |" for key, value in rows])
    assert config(items) == {"a": 4703, "b": 0.0003, "c": -1.0, "d": "nan", "e": "enabled", "f": "NULL"}


def test_generating_without_a_rule_line_is_no_block() -> None:
    lines = ["generating:", "step    1/8: train loss 2.0 (1.0 ms, 5 tok/s)"]
    assert metrics(feed_all("llmc", lines)) == [(0, {"train_loss": 2.0, "step_time_ms": 1.0, "tok_per_sec": 5.0})]


def test_a_generation_block_that_never_closes_ends_after_ten_thousand_lines() -> None:
    step_line = "step    1/8: train loss 2.0 (1.0 ms, 5 tok/s)"
    parser = get_parser("llmc")
    parser.feed("generating:")
    parser.feed("---")
    assert parser.feed(step_line) == []  # inside the block: generated text
    for _ in range(10_000):
        parser.feed("token")
    assert len(parser.feed(step_line)) == 1


def test_llmc_model_config_lines_and_grad_accum() -> None:
    lines = [
        "num_parameters: 124475904 => bytes: 248951808",
        "=> setting grad_accum_steps=8",
        "=> setting grad_accum_steps=eight",
        "channels: lots",
        "num_layers: 12",
    ]
    assert config(feed_all("llmc", lines)) == {"num_parameters": 124475904, "grad_accum_steps": 8, "num_layers": 12}


def test_llmc_ignores_its_other_lines() -> None:
    lines = [
        "total average iteration time: 415.250000 ms",
        "skipping update due to loss z-score of 5.000000",
        "allocated 237 MiB for model parameters",
        "step 7: the loss is fine",
        "step    1/8 | loss 3.0 | something else",
        "val loss",
        "val loss banana",
        "test loss ?",
        "HellaSwag: 1/2 = x",
        "+---+",
    ]
    assert feed_all("llmc", lines) == []


# --- nanoGPT ------------------------------------------------------------------------------------------------


def test_nanogpt_config_block_ends_at_the_first_line_that_is_no_assignment() -> None:
    lines = [
        "Overriding config with config/my.py:",
        "import time",
        "batch_size = 12  # small",
        "wandb_run_name = 'gpt2-' + str(time.time())",
        "betas = (0.9, 0.95)",
        "",
        "found vocab_size = 65 (inside data/x/meta.pkl)",
        "other = 5",
        "Overriding: init_from = resume",
        "Overriding: lr = 6e-4",
        "Overriding: device = cpu # not a comment",
    ]
    assert config(feed_all("nanogpt", lines)) == {
        "batch_size": 12,
        "betas": [0.9, 0.95],
        "vocab_size": 65,
        "init_from": "resume",
        "lr": 0.0006,
        "device": "cpu # not a comment",
    }


def test_nanogpt_iter_and_eval_lines() -> None:
    lines = [
        "step 250: train loss 1.9723, val loss 2.0829",
        "iter 250: loss 1.9681, time 11245.10ms, mfu -100.00%",
        "iter 260: loss nan, time 50.12ms, mfu 21.33%",
        "iter x: loss 1.0, time 1ms, mfu 1%",
    ]
    result = metrics(feed_all("nanogpt", lines))
    assert result[0] == (250, {"eval_train_loss": 1.9723, "val_loss": 2.0829})
    assert result[1] == (250, {"train_loss": 1.9681, "step_time_ms": 11245.10})
    assert result[2][0] == 260 and math.isnan(result[2][1]["train_loss"]) and result[2][1]["mfu_pct"] == 21.33
    assert len(result) == 3


# --- generic and JSON lines ---------------------------------------------------------------------------------


def test_generic_without_any_step_counts_its_metric_lines() -> None:
    lines = ["loss=3", "nothing here", "loss=2", "acc: 0.5", "iter=-1 loss=0.5"]
    parser = get_parser("generic")
    assert [parser.feed(line) for line in lines] == [[]] * 5  # held: a step may still come
    assert metrics(parser.finish()) == [
        (0, {"loss": 3.0}),
        (1, {"loss": 2.0}),
        (2, {"acc": 0.5}),
        (3, {"loss": 0.5}),  # "iter=-1" is no step and never a metric
    ]


def test_a_program_that_prints_many_lines_without_a_step_is_counted_live() -> None:
    parser = get_parser("generic")
    held = [parser.feed(f"epoch: {e}, acc: 0.{e}") for e in range(MAX_HELD_STEPLESS - 1)]
    assert held == [[]] * (MAX_HELD_STEPLESS - 1)
    released = metrics(parser.feed("epoch: 99, acc: 0.99"))
    assert [step for step, _ in released] == list(range(MAX_HELD_STEPLESS))
    assert metrics(parser.feed("acc: 1.0")) == [(MAX_HELD_STEPLESS, {"acc": 1.0})]
    assert metrics(parser.feed("step: 500, acc: 1.0")) == [(500, {"acc": 1.0})]
    assert metrics(parser.feed("acc: 0.5")) == [(500, {"acc": 0.5})]  # then the last step seen


def steps_never_decrease(result: list[tuple[int, dict[str, float]]]) -> bool:
    """What Run.log requires: a step lower than the run's current one is refused."""
    return all(a[0] <= b[0] for a, b in itertools.pairwise(result))


@pytest.mark.parametrize("name", ["generic", "jsonl"])
def test_a_preamble_without_steps_stays_at_the_first_step(name: str) -> None:
    """Numbers printed before the first step line must not push the run past step 0, where that line logs."""
    lines = ["dataset size: 50000", "vocab size: 32000", "model params: 12.3M"]
    lines += [f"step {s} | loss: {2.3 - s / 10:.2f} | lr: 3e-4" for s in range(3)]
    if name == "jsonl":
        lines = ['{"dataset_size": 50000}', '{"vocab_size": 32000}', '{"params": 12.3}']
        lines += [f'{{"step": {s}, "loss": {2.3 - s / 10:.2f}}}' for s in range(3)]
    result = metrics(feed_all(name, lines))
    assert [step for step, _ in result] == [0, 0, 0, 0, 1, 2]
    assert [values["loss"] for _, values in result if "loss" in values] == [2.3, 2.2, 2.1]


def test_a_per_epoch_step_counter_continues_after_the_highest_step() -> None:
    lines = []
    for epoch in (1, 2, 3):
        lines += [f"epoch: {epoch}, step: 0, loss: {epoch}.0", f"step: 100, loss: {epoch}.1"]
        lines += [f"step: 200, loss: {epoch}.2", f"val_loss: {epoch}.5"]
    result = metrics(feed_all("generic", lines))
    assert steps_never_decrease(result)
    train = [(step, values["loss"]) for step, values in result if "loss" in values]
    assert train == [
        (0, 1.0), (100, 1.1), (200, 1.2),
        (201, 2.0), (301, 2.1), (401, 2.2),
        (402, 3.0), (502, 3.1), (602, 3.2),
    ]  # fmt: skip
    assert [step for step, values in result if "val_loss" in values] == [200, 401, 602]


def test_an_epoch_counter_that_advances_alone_shifts_nothing() -> None:
    lines = ["epoch: 1, step: 0, loss: 3", "step: 250, loss: 2", "Epoch: 2", "step: 251, loss: 1"]
    assert [step for step, _ in metrics(feed_all("generic", lines))] == [0, 250, 250, 251]


def test_a_step_counter_that_goes_back_without_an_epoch_never_overwrites_the_highest_step() -> None:
    """A second pass over steps 0..200 (no epoch to say why): the run refuses the lower steps and warns; the
    line at the highest step would be taken as a value of that step and overwrite it, so it gives nothing."""
    lines = [f"step: {s}, loss: {s / 1000 + 1}" for s in (0, 100, 200)]
    lines += [f"step: {s}, loss: {s / 1000 + 2}" for s in (0, 100, 200)]
    lines += ["loss: 9", "step: 300, loss: 3.3", "step: 300, acc: 0.5"]
    result = metrics(feed_all("generic", lines))
    assert [(step, values.get("loss")) for step, values in result if step in (200, 300)] == [
        (200, 1.2),
        (300, 3.3),
        (300, None),  # equal steps merge again once the counter passed its highest step
    ]


@pytest.mark.parametrize(
    ("line", "values"),
    [
        ("a=1 b=2.5 c=-3e-2", {"a": 1.0, "b": 2.5, "c": -0.03}),
        ("a: 1; b: 2 | c: 3", {"a": 1.0, "b": 2.0, "c": 3.0}),
        ("train/loss=2.0, val-loss: 3.0, x.y=4", {"train/loss": 2.0, "val-loss": 3.0, "x.y": 4.0}),
        ("time: 12.3ms, acc=95%, lr: .5", {"time": 12.3, "acc": 95.0, "lr": 0.5}),
        ("a=NaN b=-inf c=Infinity", {"a": math.nan, "b": -math.inf, "c": math.inf}),
        ("level: info, v: 1.2.3, t: 12:30:01, d: 2024-01-01, h: 0x1F", {}),
        ("Namespace(lr=0.001, batch_size=32, name='x')", {"lr": 0.001, "batch_size": 32.0}),
        ("ratio: 3/4", {"ratio": 3.0}),
        ("tokens: 16,384 throughput: 1,234.5 tok/s", {"tokens": 16384.0, "throughput": 1234.5}),
        ("Number of trainable parameters = 124,439,808", {"parameters": 124439808.0}),
        ("a=1,b=2,c=-3,d=1,234", {"a": 1.0, "b": 2.0, "c": -3.0, "d": 1234.0}),
        ("x: 16,38 y: 1,2345 z: 1,234,5 w=7", {"w": 7.0}),  # no thousands groups: no number, not a cut one
        ("n=1,000,000.5e-3,", {"n": 1000.0005}),
    ],
)
def test_generic_pairs(line: str, values: dict[str, float]) -> None:
    result = metrics(feed_all("generic", [line]))
    if not values:
        assert result == []
        return
    ((_, got),) = result
    assert list(got) == list(values)
    for key, value in values.items():
        assert (math.isnan(got[key]) and math.isnan(value)) or got[key] == value


@pytest.mark.parametrize(
    ("line", "step"),
    [
        ("Step 100/1000 | loss: 2.3", 100),
        ("iter 5: loss=2.0", 5),
        ("  Iteration 12, loss: 2.0", 12),
        ("step 3 step=4 loss=2.0", 3),
        ("steps 9: loss=2.0", 0),
        ("step 1.5: loss=2.0", 0),
    ],
)
def test_generic_reads_a_leading_step_counter(line: str, step: int) -> None:
    assert metrics(feed_all("generic", [line])) == [(step, {"loss": 2.3 if "2.3" in line else 2.0})]


def test_jsonl_ignores_what_is_no_number_and_reads_huge_integers() -> None:
    lines = [
        '{"step": "3", "loss": 1, "ok": false, "tags": [1, 2], "none": null, "big": 1' + "0" * 400 + "}",
        '{"step": 4.5, "loss": 2}',
        "{not json",
        "[]",
        '"text"',
    ]
    result = metrics(feed_all("jsonl", lines))
    assert result == [(3, {"loss": 1.0, "big": math.inf}), (3, {"loss": 2.0})]


def test_an_evaluation_only_run_is_not_held_in_memory_forever() -> None:
    parser = get_parser("llmc")
    held = [parser.feed(f"val loss {i}.0") for i in range(999)]
    assert held == [[]] * 999
    released = parser.feed("val loss 999.0")
    assert [(m.step, m.values["val_loss"]) for m in released if isinstance(m, Metrics)] == [
        (0, float(i)) for i in range(1000)
    ]
    assert parser.feed("val loss 5.0") == [Metrics(0, {"val_loss": 5.0})]
    assert parser.finish() == []
