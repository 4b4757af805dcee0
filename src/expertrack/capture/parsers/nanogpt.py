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
    to_count,
)

_ITER = re.compile(r"iter (\d+): loss (\S+), time (\S+)ms, mfu (\S+)%", re.ASCII)
_EVAL = re.compile(r"step (\d+): train loss (\S+), val loss (\S+)", re.ASCII)
_OVERRIDE = re.compile(r"Overriding: (\w+) = (.*)", re.ASCII)
_ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)\s*=\s*(.+)", re.ASCII)
_VOCAB = re.compile(r"found vocab_size = (\d+)", re.ASCII)
_TOKENS_PER_ITER = "tokens per iteration will be: "
_CONFIG_FILE = "Overriding config with "
_MAX_LITERAL_CHARS = 1_000

SIGNATURES = (
    _ITER,
    _EVAL,
    re.compile(r"Overriding(?: config with |: )", re.ASCII),
    re.compile(r"tokens per iteration will be: ", re.ASCII),
    re.compile(r"found vocab_size = \d+", re.ASCII),
    re.compile(r"compiling the model\.\.\.", re.ASCII),
    re.compile(r"number of parameters: [\d.]+M$", re.ASCII),
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
            count = to_count(line[len(_TOKENS_PER_ITER) :].strip().replace(",", ""))
            return [ConfigItems({"tokens_per_iter": count})] if count is not None else []
        if line.startswith("found vocab_size"):
            match = _VOCAB.match(line)
            count = to_count(match[1]) if match else None
            return [ConfigItems({"vocab_size": count})] if count is not None else []
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
    step = to_count(match[1]) if match else None
    if match is None or step is None:
        return []
    try:
        values = {"train_loss": float(match[2]), "step_time_ms": float(match[3])}
        mfu = float(match[4])
    except ValueError:
        return []
    if mfu >= 0:  # running_mfu is -1.0 until it has been measured
        values["mfu_pct"] = mfu
    return [Metrics(step, values)]


def _eval_line(line: str) -> list[Item]:
    match = _EVAL.match(line)
    step = to_count(match[1]) if match else None
    if match is None or step is None:
        return []
    try:
        values = {"eval_train_loss": float(match[2]), "val_loss": float(match[3])}
    except ValueError:
        return []
    return [Metrics(step, values)]


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
