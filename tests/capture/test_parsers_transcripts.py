"""Every built-in format: a transcript printed from the trainer's own format strings parses to exactly the
items its builder recorded (every metric, step and config value), and detection names the right parser."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from expertrack.capture.parsers import ConfigItems, Item, Metrics, detect, get_parser

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"


def _load_builders() -> Any:
    spec = importlib.util.spec_from_file_location("parser_transcripts_build", TRANSCRIPTS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = _load_builders()
BUILDERS = {builder.__name__: builder for builder in build.BUILDERS}


def output_lines(raw: bytes) -> list[str]:
    """The lines a runner feeds: split on b"\\n", decoded with replacement, a last unterminated line kept."""
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    return [chunk.decode("utf-8", errors="replace") for chunk in chunks]


def parse(parser_name: str, lines: list[str]) -> list[Item]:
    parser = get_parser(parser_name)
    items: list[Item] = []
    for line in lines:
        items.extend(parser.feed(line))
    items.extend(parser.finish())
    return items


def same_value(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return type(actual) is type(expected) and actual == expected


def assert_items(actual: list[Item], expected: list[tuple[str, Any, dict[str, Any]]]) -> None:
    """Items equal, in order: same kind, same step, same keys, each value of the same type and value."""
    described = [repr(item) for item in actual]
    assert len(actual) == len(expected), "\n".join(described)
    for index, (item, (kind, step, values)) in enumerate(zip(actual, expected)):
        where = f"item {index}: {item!r}, expected {kind} {step} {values}"
        if kind == "metrics":
            assert isinstance(item, Metrics), where
            assert type(item.step) is int and item.step == step, where
            expected_values = {key: float(value) for key, value in values.items()}
        else:
            assert isinstance(item, ConfigItems), where
            expected_values = values
        assert list(item.values) == list(expected_values), where
        for key, value in expected_values.items():
            assert same_value(item.values[key], value), f"{where}: {key}"


@pytest.mark.parametrize("builder", BUILDERS)
def test_transcript_files_match_their_builder(builder: str) -> None:
    """The committed .txt and .expected.json files (replayed by the runner's tests) are what build.py makes."""
    transcript = BUILDERS[builder]()
    assert (TRANSCRIPTS / f"{transcript.name}.txt").read_bytes() == transcript.text.encode()
    expected = json.dumps(transcript.expected_json(), indent=1) + "\n"
    assert (TRANSCRIPTS / f"{transcript.name}.expected.json").read_text(encoding="utf-8") == expected


@pytest.mark.parametrize("builder", BUILDERS)
def test_transcript_parses_to_every_expected_item(builder: str) -> None:
    transcript = BUILDERS[builder]()
    lines = output_lines((TRANSCRIPTS / f"{transcript.name}.txt").read_bytes())
    assert_items(parse(transcript.parser, lines), transcript.items)


@pytest.mark.parametrize("builder", BUILDERS)
def test_transcript_through_a_pseudo_terminal_parses_the_same(builder: str) -> None:
    """A pty turns every "\\n" into "\\r\\n": the trailing "\\r" must not hide the line."""
    transcript = BUILDERS[builder]()
    lines = output_lines(transcript.text.replace("\n", "\r\n").encode())
    assert_items(parse(transcript.parser, lines), transcript.items)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("first", [10, 50, None])
def test_detection_names_the_transcripts_parser(builder: str, first: int | None) -> None:
    transcript = BUILDERS[builder]()
    lines = output_lines(transcript.text.encode())
    assert detect(lines[:first]) == transcript.parser


def test_both_llmc_names_read_every_llmc_family_transcript_alike() -> None:
    for builder in ("gpt2_cuda", "llmc_cpu", "llmc_cuda", "llmc_cuda_mid"):
        transcript = BUILDERS[builder]()
        lines = output_lines(transcript.text.encode())
        assert_items(parse("gpt2-cuda", lines), transcript.items)
        assert_items(parse("llmc", lines), transcript.items)


def test_llmc_steps_follow_llmcs_own_log_file() -> None:
    """train_gpt2.cu's logger writes train losses at loop steps 0..N-1 and val losses at 0, every, and N."""
    transcript = BUILDERS["llmc_cuda"]()
    items = parse("llmc", output_lines(transcript.text.encode()))
    train_steps = [m.step for m in items if isinstance(m, Metrics) and "train_loss" in m.values]
    val_steps = [m.step for m in items if isinstance(m, Metrics) and "val_loss" in m.values]
    assert train_steps == list(range(8))
    assert val_steps == [0, 4, 8]


def test_detection_falls_back_to_generic() -> None:
    assert detect([]) == "generic"
    assert detect(["hello", "", "world 42"]) == "generic"
    assert detect(['{"a": "text only"}', "plain"]) == "generic"


GRID = [
    "+------------+-------+",
    "| hyperparam | value |",
    "+============+=======+",
    "| lr         | 0.001 |",
    "+------------+-------+",
    "| batch size | 32    |",
    "+------------+-------+",
]
EPOCH_LINES = [f"epoch: 0, step: {i}, loss: {2 - i / 100:.3f}, lr: 0.001" for i in range(60)]


@pytest.mark.parametrize("first", [7, 20, 50, None])
def test_a_table_printers_grid_before_metric_lines_is_no_llmc_table(first: int | None) -> None:
    """tabulate and PrettyTable draw llm.c's "+---+" borders too; alone, they say nothing about the format."""
    assert detect((GRID + EPOCH_LINES)[:first]) == "generic"


@pytest.mark.parametrize("first", [20, 50, None])
def test_a_parameter_value_table_loses_to_the_metric_lines_only_generic_reads(first: int | None) -> None:
    table = ["+-----------+-------+", "| Parameter | Value |", "+-----------+-------+", "| lr | 0.001 |"]
    assert detect((table + EPOCH_LINES)[:first]) == "generic"
    assert detect(table) == "llmc"  # llm.c's own table header, nothing else yet
