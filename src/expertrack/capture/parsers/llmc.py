"""The llm.c family: karpathy/llm.c's trainers and the seed's gpt2-cuda trainer that descends from them.

Lines read, written as the trainers' printf formats (docs/parsers.md has a transcript of each):

    train_gpt2.c (CPU)     step %d: train loss %f (took %f ms)                      0-based loop step
    train_gpt2.cu (early)  step %4d/%d: train loss %f (%f ms, %d tok/s)             step + 1
    gpt2-cuda (the seed)   step %4d/%d: train loss %f (%f ms, %d tok/s)             step + 1
    train_gpt2.cu (mid)    step %4d/%d | train loss %7.6f | norm %6.4f | lr %.2e | %.2f ms
                               | %.1f%% bf16 MFU | %.0f tok/s                        step + 1
    train_gpt2.cu (now)    step %4d/%d | loss %7.6f (%+.2fz)| norm %6.4f (%+.2fz)| lr %.2e
                               | %.2f ms | %.1f%% bf16 MFU | %.0f tok/s              step + 1
    all                    val loss %f
    gpt2-cuda              val loss %f (avg_train %.3f, gap %+.3f)   and   test loss %f
    train_gpt2.cu          HellaSwag: %d/%d = %f
    config                 the "| Parameter | Value |" table (bordered by "+---+" rows in llm.c),
                           the CPU trainer's "[GPT-2]" block ("max_seq_len: %zu", ...) and
                           "=> setting grad_accum_steps=%d"

Steps follow llm.c's own log file (``-o``): a train line gets its 0-based loop step (the printed "k/N"
counter is step + 1), and an evaluation printed before loop step s (val loss, HellaSwag, the seed's test
loss) gets s: one past the last train line's step. Evaluations printed before the first train line are held
back until it arrives, so a resumed run (whose loop starts at its checkpoint's step) gets them right.

Skipped on purpose: nan z-scores ("(+nanz)": the outlier detector's window is not full yet), a negative MFU
("-100.0% bf16 MFU": the GPU's peak flops are unknown), and the generated text between "generating:\\n---"
and "---", which may contain anything, metric-like lines included.
"""

from __future__ import annotations

import re

from expertrack.capture.parsers.base import (
    MAX_LINE_CHARS,
    PROVISIONAL_STEP,
    ConfigItems,
    Item,
    Metrics,
    Parser,
    coerce_value,
    finished_line,
    to_count,
)

_STEP_SLASH = re.compile(r"step\s+(\d+)/\d+: train loss\s+(\S+) \((\S+) ms, (\S+) tok/s\)", re.ASCII)
_STEP_PIPE = re.compile(
    r"step\s+(\d+)/\d+ \| (?:train )?loss\s+(\S+)(?: \((\S+)z\))?\s*\| norm\s+(\S+)(?: \((\S+)z\))?"
    r"\s*\| lr\s+(\S+) \| (\S+) ms \| (\S+)% bf16 MFU \| (\S+) tok/s",
    re.ASCII,
)
_STEP_CPU = re.compile(r"step (\d+): train loss\s+(\S+) \(took (\S+) ms\)", re.ASCII)
_VAL = re.compile(r"val loss\s+(\S+)(?: \(avg_train\s+(\S+), gap\s+(\S+)\))?", re.ASCII)
_TEST = re.compile(r"test loss\s+(\S+)", re.ASCII)
_HELLASWAG = re.compile(r"HellaSwag: (\d+)/(\d+) = (\S+)", re.ASCII)
_MODEL_CONFIG = re.compile(
    r"(max_seq_len|vocab_size|padded_vocab_size|num_layers|num_heads|channels|num_parameters"
    r"|train dataset num_batches|val dataset num_batches): (\d+)\b",
    re.ASCII,
)
_MODEL_CONFIG_FIRST = frozenset("mvpnct")
_GRAD_ACCUM = "=> setting grad_accum_steps="

# The generated text is at most genT tokens (64 by default); a block that never closes must not swallow
# the rest of the run, so after this many lines the parser reads metrics again.
_MAX_GENERATION_LINES = 10_000

# Evaluations held back waiting for the first train line (see the module docstring); past this many, the run
# is taken for an evaluation-only one rather than holding its output in memory.
_MAX_HELD_EVALUATIONS = 1_000

# Detection: lines every trainer of the family prints, lines only the seed's trainer prints, and lines
# only llm.c's own trainers print.
BORDER = re.compile(r"\+-{5,}\+", re.ASCII)  # the table's border: llm.c's, but also every table printer's
FAMILY_SIGNATURES = (
    BORDER,
    re.compile(r"val loss\s+\S+$", re.ASCII),
)
GPT2_CUDA_SIGNATURES = (
    re.compile(r"val loss\s+\S+ \(avg_train ", re.ASCII),
    re.compile(r"test loss\s+\S+", re.ASCII),
    re.compile(r"\|\s*parameter\s*\|\s*value\s*\|", re.ASCII),
    _STEP_SLASH,
)
LLMC_SIGNATURES = (
    re.compile(r"\|\s*Parameter\s*\|\s*Value\s*\|", re.ASCII),
    re.compile(r"\[GPT-2\]$", re.ASCII),
    re.compile(r"generating:$", re.ASCII),
    _STEP_PIPE,
    _STEP_CPU,
    _HELLASWAG,
    _MODEL_CONFIG,
)


class LlmcParser(Parser):
    """Parser for every trainer of the llm.c family (CPU and CUDA, old and new step lines)."""

    name = "llmc"

    def __init__(self) -> None:
        self._eval_step: int | None = None  # one past the last train step; None before the first
        self._pending: list[dict[str, float]] = []  # evaluations seen before the first train line
        self._generation = 0  # 0: not in a block, 1: after "generating:", 2: inside the text
        self._generation_lines = 0

    def feed(self, line: str) -> list[Item]:
        if "\r" in line:
            line = finished_line(line)
        if self._generation:
            return self._inside_generation(line)
        if line.startswith("step "):
            return self._train_line(line)
        if line.startswith("val loss"):
            return self._val_line(line)
        first = line[:1]
        if first == "|":
            return _table_row(line)
        if first == "+" or len(line) > MAX_LINE_CHARS:
            return []
        if line.startswith("test loss"):
            match = _TEST.match(line)
            return self._evaluation({"test_loss": float(match[1])}) if match and _is_float(match[1]) else []
        if line.startswith("generating:"):
            self._generation = 1
            return []
        if line.startswith("HellaSwag: "):
            return self._hellaswag_line(line)
        if line.startswith(_GRAD_ACCUM):
            count = to_count(line[len(_GRAD_ACCUM) :].strip())
            return [ConfigItems({"grad_accum_steps": count})] if count is not None else []
        if first in _MODEL_CONFIG_FIRST:
            match = _MODEL_CONFIG.match(line)
            count = to_count(match[2]) if match else None
            if match and count is not None:
                return [ConfigItems({match[1]: count})]
        return []

    def finish(self) -> list[Item]:
        # Evaluations of a run that never printed a train line measured the weights before any update.
        items: list[Item] = [Metrics(0, values) for values in self._pending]
        self._pending = []
        return items

    def _train_line(self, line: str) -> list[Item]:
        if " | " in line:
            return self._pipe_line(line)
        if "(took " in line:
            match = _STEP_CPU.match(line)
            step = to_count(match[1]) if match else None
            if match is None or step is None:
                return []
            try:
                values = {"train_loss": float(match[2]), "step_time_ms": float(match[3])}
            except ValueError:
                return []
            return self._train(step, values)
        match = _STEP_SLASH.match(line)
        if not match:
            return []
        # The seed's step line is the hot path (a child may print 400,000 a second): inlined, one regex.
        printed, loss, ms, tokens = match.groups()
        if len(printed) > 18:  # more digits than any step (int() refuses 4,300 and more)
            return []
        try:
            values = {"train_loss": float(loss), "step_time_ms": float(ms), "tok_per_sec": float(tokens)}
        except ValueError:
            return []
        step = int(printed) - 1  # the printed counter is 1-based
        if step < 0:
            step = 0
        self._eval_step = step + 1
        if self._pending:
            return self._train(step, values)
        return [Metrics(step, values)]

    def _pipe_line(self, line: str) -> list[Item]:
        match = _STEP_PIPE.match(line)
        if not match:
            return []
        try:
            values = {
                "train_loss": float(match[2]),
                "grad_norm": float(match[4]),
                "lr": float(match[6]),
                "step_time_ms": float(match[7]),
                "tok_per_sec": float(match[9]),
            }
            mfu = float(match[8])
            if mfu >= 0:  # llm.c prints -100.0% when it does not know the GPU's peak flops
                values["mfu_pct"] = mfu
            for group, name in ((3, "train_loss_z"), (5, "grad_norm_z")):
                if match[group] is not None:
                    z = float(match[group])
                    if z == z:  # nan: the outlier detector's window is not full yet
                        values[name] = z
        except ValueError:
            return []
        step = _zero_based(match[1])
        return [] if step is None else self._train(step, values)

    def _val_line(self, line: str) -> list[Item]:
        match = _VAL.match(line)
        if not match:
            return []
        try:
            values = {"val_loss": float(match[1])}
            if match[2] is not None:
                values["avg_train_loss"] = float(match[2])
                values["generalization_gap"] = float(match[3])
        except ValueError:
            return []
        return self._evaluation(values)

    def _hellaswag_line(self, line: str) -> list[Item]:
        match = _HELLASWAG.match(line)
        if not match or not _is_float(match[3]):
            return []
        return self._evaluation({"hellaswag_acc": float(match[3])})

    def _train(self, step: int, values: dict[str, float]) -> list[Item]:
        self._eval_step = step + 1
        if not self._pending:
            return [Metrics(step, values)]
        items: list[Item] = [Metrics(step, held) for held in self._pending]
        self._pending = []
        items.append(Metrics(step, values))
        return items

    def _evaluation(self, values: dict[str, float]) -> list[Item]:
        if self._eval_step is None:
            self._pending.append(values)
            if len(self._pending) < _MAX_HELD_EVALUATIONS:
                return [Metrics(PROVISIONAL_STEP, values)] if self.live else []
            self._eval_step = 0  # evaluations and no training: they measured the weights before any update
            return self.finish()
        return [Metrics(self._eval_step, values)]

    def _inside_generation(self, line: str) -> list[Item]:
        is_rule = line.rstrip() == "---"
        if self._generation == 1:  # "generating:" must be followed by "---" to open a block
            if is_rule:
                self._generation, self._generation_lines = 2, 0
                return []
            self._generation = 0
            return self.feed(line)
        self._generation_lines += 1
        if is_rule or self._generation_lines > _MAX_GENERATION_LINES:
            self._generation = 0
        return []


class Gpt2CudaParser(LlmcParser):
    """The seed's gpt2-cuda trainer: an llm.c descendant, read by the same code under its own name."""

    name = "gpt2-cuda"


def _table_row(line: str) -> list[Item]:
    """One ``| key | value |`` row as config; borders, the header and one-cell rows give nothing.

    The key is the text of the first cell; the value is everything up to the last "|", so a value wider
    than its column (llm.c pads with ``%-50s`` but never truncates) is kept whole.
    """
    body = line.rstrip()
    if len(body) < 3 or body[-1] != "|" or len(body) > MAX_LINE_CHARS:
        return []
    key, sep, value = body[1:-1].partition("|")
    key, value = key.strip(), value.strip()
    if not sep or not key or not key.strip("-: "):
        return []
    if key.lower() == "parameter" and value.lower() == "value":
        return []
    return [ConfigItems({key: coerce_value(value)})]


def _zero_based(printed: str) -> int | None:
    """The loop step behind a printed 1-based "k/N" counter (never below 0), None when it is no count."""
    count = to_count(printed)
    if count is None:
        return None
    return count - 1 if count > 0 else 0


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
