"""User rules: a TOML file of regexes whose named groups become metrics or config.

    [[metric]]
    name = "train"                       # optional: names the rule in error messages
    regex = '^it (?P<step>\\d+) loss=(?P<loss>\\S+) lr=(?P<lr>\\S+)'
    rename = { loss = "train_loss" }     # optional: group -> metric name (default: the group's name)
    step_offset = -1                     # optional: added to the step (e.g. -1 for a 1-based counter)

    [[config]]
    regex = '^\\| (?P<key>[^|]+?) +\\| (?P<value>[^|]*?) +\\|$'

A metric rule's group named ``step`` (or the one ``step_group`` names) is the step; a metric rule without
one takes the last step any rule produced (a count of such lines before that), plus its ``step_offset``.
A config rule with groups ``key`` and ``value`` gives {key: value}; otherwise each of its named groups is a
config entry. Every matching rule contributes, in file order. ``prefix`` (the line starts with it) and
``contains`` (the line contains it) are checked before the regex; a regex that starts with "^" and a literal
gets its prefix check for free. docs/parsers.md has worked examples.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expertrack.capture.parsers.base import (
    MAX_LINE_CHARS,
    ConfigItems,
    Item,
    Metrics,
    Parser,
    StepClock,
    coerce_value,
    finished_line,
    step_from,
    to_float,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

_RULE_KINDS = ("metric", "config")
_TOP_LEVEL_KEYS = {"description", *_RULE_KINDS}
_COMMON_KEYS = {"name", "regex", "prefix", "contains", "rename"}
_RULE_KEYS = {"metric": _COMMON_KEYS | {"step_group", "step_offset"}, "config": _COMMON_KEYS}
_REGEX_META = set(".^$*+?{}[]|()")


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and, where it applies, the rule."""


@dataclass(frozen=True)
class Rule:
    """One compiled rule: its cheap checks, its regex, and what its groups become."""

    kind: str
    regex: re.Pattern[str]
    prefix: str | None
    contains: str | None
    names: tuple[tuple[str, str], ...]  # (group, metric or config name)
    step_group: str | None = None
    step_offset: int = 0
    key_value: bool = False  # a config rule with "key" and "value" groups


@dataclass
class RulesParser(Parser):
    """Parser built from a rules file; ``source`` is the file it came from."""

    rules: list[Rule]
    source: str = ""
    _clock: StepClock = field(default_factory=StepClock)

    name = "rules"

    def feed(self, line: str) -> list[Item]:
        if "\r" in line:
            line = finished_line(line)
        if len(line) > MAX_LINE_CHARS:
            return []
        items: list[Item] = []
        for rule in self.rules:
            if rule.prefix is not None and not line.startswith(rule.prefix):
                continue
            if rule.contains is not None and rule.contains not in line:
                continue
            match = rule.regex.search(line)
            if match is None:
                continue
            if rule.kind == "config":
                item = self._config(rule, match)
                if item is not None:
                    items.append(item)
            else:
                items += self._metrics(rule, match)
        return items

    def finish(self) -> list[Item]:
        return self._clock.finish()

    def poll(self) -> list[Item]:
        return self._clock.expire()

    def go_live(self) -> None:
        super().go_live()
        self._clock.provisional = True

    def _metrics(self, rule: Rule, match: re.Match[str]) -> list[Item]:
        values: dict[str, float] = {}
        for group, metric in rule.names:
            text = match[group]
            value = None if text is None else to_float(text)
            if value is not None:
                values[metric] = value
        printed = match[rule.step_group] if rule.step_group else None
        step = None if printed is None else step_from(to_float(printed))
        clock = self._clock
        if step is not None:
            logged = clock.seen(max(step + rule.step_offset, 0))
            if logged is None:
                return []
            items = clock.release(logged) if clock.held else []
            return [*items, Metrics(logged, values)] if values else items
        if not values:
            return []
        if clock.last is not None:
            return [Metrics(max(clock.last + rule.step_offset, 0), values)]
        return clock.implicit(values)

    @staticmethod
    def _config(rule: Rule, match: re.Match[str]) -> Item | None:
        if rule.key_value:
            key = (match["key"] or "").strip()
            return ConfigItems({key: coerce_value(match["value"] or "")}) if key else None
        values = {name: coerce_value(match[group]) for group, name in rule.names if match[group] is not None}
        return ConfigItems(values) if values else None


def load_rules(path: str | Path) -> RulesParser:
    """Read and check a rules file; raises RulesError naming the file and the rule at fault."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RulesError(f"rules file {path}: cannot be read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise RulesError(f"rules file {path}: not UTF-8 text ({error.reason})") from None
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"rules file {path}: not valid TOML: {error}") from None
    unknown = sorted(set(document) - _TOP_LEVEL_KEYS)
    if unknown:
        raise RulesError(
            f"rules file {path}: unknown top-level key {unknown[0]!r} "
            f"(expected [[metric]] and [[config]] tables, and an optional description)"
        )
    rules: list[Rule] = []
    for kind in _RULE_KINDS:
        tables = document.get(kind, [])
        if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
            raise RulesError(f"rules file {path}: {kind!r} must be an array of tables, written [[{kind}]]")
        for index, table in enumerate(tables, start=1):
            where = f"rules file {path}: [[{kind}]] rule {index}"
            if isinstance(table.get("name"), str):
                where += f" ({table['name']})"
            rules.append(_compile_rule(kind, table, where))
    if not rules:
        raise RulesError(f"rules file {path}: no rules: add at least one [[metric]] or [[config]] table")
    return RulesParser(rules, source=str(path))


def _compile_rule(kind: str, table: dict[str, Any], where: str) -> Rule:
    unknown = sorted(set(table) - _RULE_KEYS[kind])
    if unknown:
        raise RulesError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_RULE_KEYS[kind]))})")
    pattern = table.get("regex")
    if not isinstance(pattern, str) or not pattern:
        raise RulesError(f"{where}: needs a regex = '...' string")
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise RulesError(f"{where}: bad regex {pattern!r}: {error}") from None
    groups = list(regex.groupindex)
    prefix = _optional_text(table, "prefix", where)
    contains = _optional_text(table, "contains", where)
    if prefix is None:
        prefix = literal_prefix(regex)
    rename = table.get("rename", {})
    if not isinstance(rename, dict) or not all(isinstance(v, str) and v for v in rename.values()):
        raise RulesError(f'{where}: rename must be a table of group = "name" strings')
    if kind == "config" and "key" in groups and "value" in groups:
        return Rule(kind, regex, prefix, contains, (), key_value=True)
    if kind == "config" and ("key" in groups or "value" in groups):
        raise RulesError(f"{where}: a config regex with a 'key' group needs a 'value' group, and back")
    step_group = _step_group(table, groups, where) if kind == "metric" else None
    value_groups = [group for group in groups if group != step_group]
    if not value_groups:
        raise RulesError(f"{where}: the regex has no named group to record, e.g. (?P<loss>\\S+)")
    for group in rename:
        if group not in value_groups:
            raise RulesError(f"{where}: rename names {group!r}, which is not a value group of the regex")
    step_offset = table.get("step_offset", 0)
    if not isinstance(step_offset, int) or isinstance(step_offset, bool):
        raise RulesError(f"{where}: step_offset must be an integer, e.g. -1")
    names = tuple((group, rename.get(group, group)) for group in value_groups)
    return Rule(kind, regex, prefix, contains, names, step_group, step_offset)


def _step_group(table: dict[str, Any], groups: list[str], where: str) -> str | None:
    step_group = table.get("step_group")
    if step_group is None:
        return "step" if "step" in groups else None
    if not isinstance(step_group, str) or step_group not in groups:
        raise RulesError(f"{where}: step_group {step_group!r} is not a named group of the regex")
    return step_group


def _optional_text(table: dict[str, Any], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise RulesError(f"{where}: {key} must be a non-empty string")
    return value


def literal_prefix(regex: re.Pattern[str]) -> str | None:
    """The literal text every match must start the line with, read off a regex such as '^step (\\d+)'.

    None when the regex is not anchored with "^", starts with no literal, or uses flags that change what
    its characters mean (IGNORECASE, VERBOSE, MULTILINE).
    """
    pattern = regex.pattern
    if not pattern.startswith("^") or regex.flags & (re.IGNORECASE | re.VERBOSE | re.MULTILINE):
        return None
    if _has_top_level_alternation(pattern):  # "^ab|cd": the second branch need not start with "ab"
        return None
    literal: list[str] = []
    i = 1
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1 : i + 2]
            if not escaped or escaped.isalnum():  # \d, \s, \b ... are classes, not literals
                break
            literal.append(escaped)
            i += 2
            continue
        if char in _REGEX_META:
            break
        literal.append(char)
        i += 1
    if i < len(pattern) and pattern[i] in "*?{" and literal:
        literal.pop()  # "^ab?" only promises "a"
    return "".join(literal) or None


def _has_top_level_alternation(pattern: str) -> bool:
    depth, in_class, i = 0, False, 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":  # "[]...]": a leading "]" is a member, not the end
                i += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        i += 1
    return False
