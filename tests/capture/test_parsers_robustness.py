"""Bad output never raises out of a parser and never becomes a metric: garbage, NaN and inf, non-UTF-8
bytes, a 10 MB line, progress bars redrawn with "\\r"."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from expertrack.capture.parsers import ConfigItems, Item, Metrics, get_parser, parser_names

SEED_STEP = "step    4/1000: train loss 5.123456 (12.3 ms, 84000 tok/s)"
SAMPLE_LINES = [
    SEED_STEP,
    "val loss 4.567890 (avg_train 5.123, gap +0.456)",
    "step    1/8 | loss 3.0 (+nanz)| norm 1.0 (+nanz)| lr 1.00e-04 | 1.00 ms | 9.0% bf16 MFU | 1 tok/s",
    "step 3: train loss 1.0 (took 2.0 ms)",
    "iter 5: loss 1.0, time 2.0ms, mfu 3.0%",
    "| key | value |",
    '{"step": 1, "loss": 2}',
    "loss=1 acc: 2",
    "generating:",
    "---",
]


def all_parsers() -> list[str]:
    return parser_names()


def assert_well_formed(items: list[Item]) -> None:
    for item in items:
        if isinstance(item, Metrics):
            assert type(item.step) is int and item.step >= 0
            assert item.values and all(type(value) is float for value in item.values.values())
        else:
            assert isinstance(item, ConfigItems) and item.values


@pytest.mark.parametrize("name", all_parsers())
@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.one_of(st.text(max_size=200), st.sampled_from(SAMPLE_LINES)), max_size=30))
def test_any_text_never_raises(name: str, lines: list[str]) -> None:
    parser = get_parser(name)
    for line in lines:
        assert_well_formed(parser.feed(line))
    assert_well_formed(parser.finish())


@pytest.mark.parametrize("name", all_parsers())
def test_random_bytes_decoded_with_replacement(name: str) -> None:
    rng = random.Random(1234)
    parser = get_parser(name)
    for _ in range(2_000):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(120)))
        for line in raw.decode("utf-8", errors="replace").split("\n"):
            assert_well_formed(parser.feed(line))
    assert_well_formed(parser.finish())


@pytest.fixture(scope="module")
def ten_megabytes() -> str:
    """10 MB without a newline: separators, digits and carriage returns, in no structure."""
    chunk = "".join(random.Random(7).choices("ab :=|,.{}0123456789\r", k=100_000))
    return chunk * 100


@pytest.mark.parametrize("name", all_parsers())
@pytest.mark.parametrize("start", ["", "step ", "val loss ", "{", "| ", "iter 1: loss ", "Overriding config with x:"])
def test_a_10_mb_line_with_no_structure(name: str, start: str, ten_megabytes: str) -> None:
    parser = get_parser(name)
    assert_well_formed(parser.feed(start + ten_megabytes))
    assert parser.feed(start + "x" * 10_000_000) == []
    assert_well_formed(parser.feed(SEED_STEP))  # and the parser still works afterwards


def test_non_utf8_bytes_around_a_step_line() -> None:
    parser = get_parser("gpt2-cuda")
    assert parser.feed((SEED_STEP.encode() + b"\xff\xfe trailing").decode("utf-8", errors="replace"))[0] == Metrics(
        3, {"train_loss": 5.123456, "step_time_ms": 12.3, "tok_per_sec": 84000.0}
    )
    assert parser.feed((b"\xc3" + SEED_STEP.encode()).decode("utf-8", errors="replace")) == []
    latin1 = "| r\xe9sum\xe9 | caf\xe9 |".encode("latin-1").decode("utf-8", errors="replace")
    assert parser.feed(latin1) == [ConfigItems({"r\ufffdsum\ufffd": "caf\ufffd"})]


@pytest.mark.parametrize(
    "line",
    [
        SEED_STEP + "\rdownloading 50%",  # a metric line drawn over by a progress bar
        "step    4/1000: train lo\rss 5.1 (1.0 ms, 1 tok/s)",  # fragments that only join on screen
        "\r\r\r",
        "",
    ],
)
def test_progress_bar_fragments_are_never_metrics(line: str) -> None:
    for name in parser_names():
        assert get_parser(name).feed(line) == [], name


def test_the_last_drawing_of_a_progress_line_is_the_finished_line() -> None:
    parser = get_parser("gpt2-cuda")
    assert len(parser.feed("loading 10%\rloading 100%\r" + SEED_STEP + "\r")) == 1


@pytest.mark.parametrize(
    ("name", "line", "key"),
    [
        ("gpt2-cuda", "step    1/9: train loss nan (1.0 ms, inf tok/s)", "train_loss"),
        ("gpt2-cuda", "step    1/9: train loss -nan (1.0 ms, -inf tok/s)", "tok_per_sec"),
        ("llmc", "step 1: train loss inf (took nan ms)", "step_time_ms"),
        ("nanogpt", "iter 1: loss nan, time infms, mfu nan%", "train_loss"),
        ("generic", "loss=nan lr=inf", "lr"),
        ("jsonl", '{"loss": NaN, "lr": -Infinity}', "lr"),
    ],
)
def test_nan_and_inf_parse_to_float_nan_and_inf(name: str, line: str, key: str) -> None:
    parser = get_parser(name)
    items = parser.feed(line) + parser.finish()  # a step-less line waits for a step until the end
    assert len(items) == 1 and isinstance(items[0], Metrics)
    value = items[0].values[key]
    assert math.isnan(value) or math.isinf(value)


HUGE = "9" * 5_000  # Python's int() refuses strings of 4,300 digits and more


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("gpt2-cuda", f"step {HUGE}/10: train loss 1.0 (1.0 ms, 1 tok/s)"),
        ("llmc", f"step {HUGE}/10 | loss 1.0 (+nanz)| norm 1.0 (+nanz)| lr 1e-4 | 1.0 ms | 1.0% bf16 MFU | 1 tok/s"),
        ("llmc", f"step {HUGE}: train loss 1.0 (took 1.0 ms)"),
        ("llmc", f"num_layers: {HUGE}"),
        ("llmc", f"=> setting grad_accum_steps={HUGE}"),
        ("nanogpt", f"iter {HUGE}: loss 1.0, time 1.0ms, mfu 1.0%"),
        ("nanogpt", f"step {HUGE}: train loss 1.0, val loss 1.0"),
        ("nanogpt", f"tokens per iteration will be: {HUGE}"),
        ("nanogpt", f"found vocab_size = {HUGE} (inside x)"),
    ],
)
def test_numbers_with_thousands_of_digits_are_no_steps(name: str, line: str) -> None:
    assert get_parser(name).feed(line) == []


def test_huge_config_numbers_stay_text_and_huge_steps_are_no_steps() -> None:
    assert get_parser("llmc").feed(f"| seed | {HUGE} |") == [ConfigItems({"seed": HUGE})]
    for line in (f'{{"step": {HUGE}, "loss": 1}}', '{"step": 1e300, "loss": 1}', f"step={HUGE} loss=1"):
        parser = get_parser("generic")
        items = parser.feed(line) + parser.finish()
        assert items == [Metrics(0, {"loss": 1.0})], line  # no valid step: counted as the first line
