"""User rules in TOML: a good file parses a made-up trainer's output; a bad one gives a clear error that
names the file and the rule at fault."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from expertrack.capture.parsers import ConfigItems, Item, Metrics, RulesError, get_parser
from expertrack.capture.parsers.rules import RulesParser, literal_prefix

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"


def feed_all(parser_name: str, lines: list[str]) -> list[Item]:
    parser = get_parser(parser_name)
    items: list[Item] = []
    for line in lines:
        items.extend(parser.feed(line))
    return items + parser.finish()


def write_rules(tmp_path: Path, text: str) -> str:
    path = tmp_path / "my.rules.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_example_rules_file_reads_its_transcript() -> None:
    rules = str(TRANSCRIPTS / "custom.rules.toml")
    parser = get_parser(rules)
    assert isinstance(parser, RulesParser) and parser.source == rules
    lines = (TRANSCRIPTS / "custom.txt").read_text(encoding="utf-8").splitlines()
    items = feed_all(rules, lines)
    assert [item.values for item in items if isinstance(item, ConfigItems)] == [
        {"batch_size": 32},
        {"optimizer.name": "adamw"},
        {"lr": 0.001},
        {"n_layer": 12, "d_model": 768},
    ]
    result = [(item.step, item.values) for item in items if isinstance(item, Metrics)]
    assert result[:3] == [
        (0, {"train_loss": 10.93, "lr": 0.001}),
        (1, {"train_loss": 9.87, "lr": 0.001}),
        (2, {"val_ppl": 4021.5, "val_acc": 3.5}),
    ]
    assert result[3][0] == 2 and math.isnan(result[3][1]["train_loss"]) and result[3][1]["lr"] == 0.00095
    assert result[4] == (3, {"train_loss": 9.1})  # "lr oops" is no number: that value alone is dropped
    assert len(result) == 5


def test_rules_without_any_step_group_count_their_lines(tmp_path: Path) -> None:
    path = write_rules(tmp_path, "[[metric]]\nregex = 'loss (?P<loss>\\S+)'\n")
    items = feed_all(path, ["loss 3", "loss 2", "noise", "loss 1"])
    assert [(item.step, item.values["loss"]) for item in items if isinstance(item, Metrics)] == [
        (0, 3.0),
        (1, 2.0),
        (2, 1.0),
    ]


def test_a_custom_step_group_and_progress_bars(tmp_path: Path) -> None:
    path = write_rules(tmp_path, "[[metric]]\nregex = '^E(?P<epoch>\\d+) loss=(?P<loss>\\S+)'\nstep_group = 'epoch'\n")
    items = feed_all(path, ["E1 loss=0.5\rE2 loss=0.4", "E3 loss=0.3\r", "E9 loss=9\rdone"])
    assert [(item.step, item.values) for item in items if isinstance(item, Metrics)] == [
        (2, {"loss": 0.4}),
        (3, {"loss": 0.3}),
    ]


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (r"^step (?P<s>\d+)", "step "),
        (r"^\| (?P<k>\w+)", "| "),
        (r"^ab?c", "a"),
        (r"^ab*", "a"),
        (r"^a{2}", None),
        (r"^abc|xyz", None),
        (r"^(?:abc|xyz)", None),
        (r"^[ab]c", None),
        (r"step (?P<s>\d+)", None),
        (r"(?i)^step", None),
        (r"^\d+", None),
        (r"^loss\.val (?P<v>\S+)", "loss.val "),
    ],
)
def test_literal_prefix(pattern: str, prefix: str | None) -> None:
    assert literal_prefix(re.compile(pattern)) == prefix


BAD_FILES = [
    ("[[metric]\nregex = 'x'\n", r"not valid TOML"),
    ("", r"no rules"),
    ("description = 'nothing'\n", r"no rules"),
    ("metrics = []\n", r"unknown top-level key 'metrics'"),
    ("metric = 'x'\n", r"'metric' must be an array of tables"),
    ("[[metric]]\nname = 'train'\n", r"\[\[metric\]\] rule 1 \(train\): needs a regex"),
    ("[[metric]]\nregex = ''\n", r"rule 1: needs a regex"),
    (
        "[[metric]]\nname = 'a'\nregex = 'ok (?P<v>x)'\n[[metric]]\nname = 'b'\nregex = 'loss (?P<v>[0-9'\n",
        r"\[\[metric\]\] rule 2 \(b\): bad regex 'loss \(\?P<v>\[0-9': unterminated character set",
    ),
    ("[[metric]]\nregex = 'loss (\\S+)'\n", r"rule 1: the regex has no named group"),
    ("[[metric]]\nregex = 'step (?P<step>\\d+)'\n", r"rule 1: the regex has no named group"),
    ("[[metric]]\nregex = '(?P<loss>\\S+)'\nstep_group = 'iter'\n", r"step_group 'iter' is not a named group"),
    ("[[metric]]\nregex = '(?P<loss>\\S+)'\nrename = { los = 'train_loss' }\n", r"rename names 'los'"),
    ("[[metric]]\nregex = '(?P<loss>\\S+)'\nrename = { loss = 3 }\n", r"rename must be a table"),
    ("[[metric]]\nregex = '(?P<loss>\\S+)'\nstep_offset = 'one'\n", r"step_offset must be an integer"),
    ("[[metric]]\nregex = '(?P<loss>\\S+)'\nstep_offset = true\n", r"step_offset must be an integer"),
    ("[[metric]]\nregx = '(?P<loss>\\S+)'\n", r"unknown key 'regx'"),
    ("[[metric]]\nregex = '(?P<loss>\\S+)'\nprefix = ''\n", r"prefix must be a non-empty string"),
    ("[[config]]\nregex = '(?P<key>\\w+)'\n", r"\[\[config\]\] rule 1: a config regex with a 'key' group"),
    ("[[config]]\nregex = '(?P<a>\\w+)'\nstep_offset = 1\n", r"\[\[config\]\] rule 1: unknown key 'step_offset'"),
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_bad_rules_file_names_the_file_and_the_rule(tmp_path: Path, text: str, message: str) -> None:
    path = write_rules(tmp_path, text)
    with pytest.raises(RulesError) as caught:
        get_parser(path)
    assert str(caught.value).startswith(f"rules file {path}: ")
    assert re.search(message, str(caught.value)), str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_rules_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n[[metric]]\nregex = '(?P<v>x)'\n")
    with pytest.raises(RulesError, match=r"latin1\.toml: not UTF-8"):
        get_parser(str(path))


def test_missing_rules_file_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"rules file .*nope\.toml' not found"):
        get_parser(str(tmp_path / "nope.toml"))
    with pytest.raises(ValueError, match=r"not found"):
        get_parser(str(tmp_path))  # a directory
    with pytest.raises(ValueError, match=r"unknown parser 'llm\.c': use one of gpt2-cuda, llmc, nanogpt"):
        get_parser("llm.c")
