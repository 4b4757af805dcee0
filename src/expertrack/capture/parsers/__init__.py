"""Parsers that turn a training program's console output into metrics and config, line by line.

Pure library: no I/O but reading a rules file. The runner feeds every line of the child's output to
``feed()`` and stores the items it returns; ``finish()`` at the end flushes what a parser held back.
docs/parsers.md describes every format, the step rule, and the TOML rules.
"""

from expertrack.capture.parsers.argv import parse_argv_config
from expertrack.capture.parsers.base import ConfigItems, Item, Metrics, Parser
from expertrack.capture.parsers.registry import detect, get_parser, parser_names
from expertrack.capture.parsers.rules import RulesError

__all__ = [
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
