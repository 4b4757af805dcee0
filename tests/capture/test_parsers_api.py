"""The interface the runner codes against: public names, built-in names, fresh stateful instances."""

from __future__ import annotations

import dataclasses

import pytest

import expertrack.capture.parsers as parsers
from expertrack.capture.parsers import ConfigItems, Metrics, Parser, get_parser, parser_names


def test_public_names_are_pinned() -> None:
    assert sorted(parsers.__all__) == [
        "ConfigItems",
        "Item",
        "Metrics",
        "Parser",
        "RulesError",
        "detect",
        "get_parser",
        "parse_argv_config",
        "parser_names",
    ]


def test_builtin_parsers() -> None:
    assert parser_names() == ["gpt2-cuda", "llmc", "nanogpt", "jsonl", "generic"]
    for name in parser_names():
        first, second = get_parser(name), get_parser(name)
        assert isinstance(first, Parser) and first.name == name
        assert first is not second  # one instance per run: parsers keep state


def test_items_are_frozen_values() -> None:
    metrics = Metrics(3, {"loss": 1.0})
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.step = 4  # type: ignore[misc]
    assert metrics == Metrics(3, {"loss": 1.0})
    assert ConfigItems({"lr": 0.1}) != ConfigItems({"lr": 0.2})
    assert isinstance(metrics, parsers.Item)  # type: ignore[arg-type]


def test_base_parser_holds_nothing_back() -> None:
    assert Parser().finish() == []
    with pytest.raises(NotImplementedError):
        Parser().feed("x")
