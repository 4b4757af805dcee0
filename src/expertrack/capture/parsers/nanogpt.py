"""nanoGPT (karpathy/nanoGPT train.py and configurator.py).

Lines read, as train.py and configurator.py format them:

    iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {running_mfu*100:.2f}%
    step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}
    Overriding config with {config_file}:      followed by the file's text, "name = literal" lines
    Overriding: {key} = {attempt}              a --key=value override
    tokens per iteration will be: {tokens_per_iter:,}
    found vocab_size = {meta_vocab_size} (inside {meta_path})

``iter_num`` counts the updates done before the iteration, so it is the step as printed: the same
convention as llm.c's loop step. The iteration's loss becomes ``train_loss``; the evaluation's estimates
over eval_iters batches become ``eval_train_loss`` and ``val_loss`` (different names: at an eval step both
lines are printed with the same iter_num). ``running_mfu`` starts at -1 and is printed as -100.00% for the
first iterations: a negative MFU is a placeholder and is not logged.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from expertrack.capture.parsers.base import (
    MAX_LINE_CHARS,
    ConfigItems,
    Item,
    Metrics,
    Parser,
    finished_line,
)

_ITER = re.compile(r"iter (\d+): loss (\S+), time (\S+)ms, mfu (\S+)%")
_EVAL = re.compile(r"step (\d+): train loss (\S+), val loss (\S+)")
_OVERRIDE = re.compile(r"Overriding: (\w+) = (.*)")
_ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)\s*=\s*(.+)")
_VOCAB = re.compile(r"found vocab_size = (\d+)")
_TOKENS_PER_ITER = "tokens per iteration will be: "
_CONFIG_FILE = "Overriding config with "
_MAX_LITERAL_CHARS = 1_000

SIGNATURES = (
    _ITER,
    _EVAL,
    re.compile(r"Overriding(?: config with |: )"),
    re.compile(r"tokens per iteration will be: "),
    re.compile(r"found vocab_size = \d+"),
    re.compile(r"compiling the model\.\.\."),
    re.compile(r"number of parameters: [\d.]+M$"),
)


class NanoGPTParser(Parser):
    """Parser for nanoGPT's train.py output, its configurator's overrides included."""

    name = "nanogpt"

    def __init__(self) -> None:
        self._in_config_file = False  # between "Overriding config with FILE:" and the file's end

    def feed(self, line: str) -> list[Item]:
        if "\r" in line:
            line = finished_line(line)
        if self._in_config_file:
            items = self._config_file_line(line)
            if items is not None:
                return items
        if line.startswith("iter "):
            return _iter_line(line)
        if line.startswith("step "):
            return _eval_line(line)
        if len(line) > MAX_LINE_CHARS:
            return []
        if line.startswith("Overriding"):
            return self._override_line(line)
        if line.startswith(_TOKENS_PER_ITER):
            digits = line[len(_TOKENS_PER_ITER) :].strip().replace(",", "")
            return [ConfigItems({"tokens_per_iter": int(digits)})] if _is_count(digits) else []
        if line.startswith("found vocab_size"):
            match = _VOCAB.match(line)
            return [ConfigItems({"vocab_size": int(match[1])})] if match else []
        return []

    def _override_line(self, line: str) -> list[Item]:
        if line.startswith(_CONFIG_FILE) and line.rstrip().endswith(":"):
            self._in_config_file = True
            return []
        match = _OVERRIDE.match(line)
        if not match:
            return []
        value = _literal(match[2])
        return [ConfigItems({match[1]: match[2] if value is _NOT_LITERAL else value})]

    def _config_file_line(self, line: str) -> list[Item] | None:
        """A line of the printed config file, or None once the file's text has ended."""
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "import ", "from ")):
            return []
        match = _ASSIGNMENT.fullmatch(stripped)
        if not match:
            self._in_config_file = False
            return None
        value = _literal(match[2])
        if value is _NOT_LITERAL:  # e.g. wandb_run_name = 'mini-gpt' + str(time.time())
            return []
        return [ConfigItems({match[1]: value})]


def _iter_line(line: str) -> list[Item]:
    match = _ITER.match(line)
    if not match:
        return []
    try:
        values = {"train_loss": float(match[2]), "step_time_ms": float(match[3])}
        mfu = float(match[4])
    except ValueError:
        return []
    if mfu >= 0:  # running_mfu is -1.0 until it has been measured
        values["mfu_pct"] = mfu
    return [Metrics(int(match[1]), values)]


def _eval_line(line: str) -> list[Item]:
    match = _EVAL.match(line)
    if not match:
        return []
    try:
        values = {"eval_train_loss": float(match[2]), "val_loss": float(match[3])}
    except ValueError:
        return []
    return [Metrics(int(match[1]), values)]


_NOT_LITERAL: Any = object()


def _literal(text: str) -> Any:
    """A printed Python value (with or without a trailing "# comment"), or _NOT_LITERAL."""
    text = text.strip()
    if len(text) > _MAX_LITERAL_CHARS:
        return _NOT_LITERAL
    candidates = [text]
    if "#" in text:
        candidates.append(text.split("#", 1)[0].strip())
    for candidate in candidates:
        try:
            value = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, tuple):
            value = list(value)
        if value is None or isinstance(value, (bool, int, float, str, list)):
            return value
    return _NOT_LITERAL


def _is_count(text: str) -> bool:
    return text.isascii() and text.isdigit()
