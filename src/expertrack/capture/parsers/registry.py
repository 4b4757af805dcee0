"""Built-in parsers by name, rules files by path, and detection of the format from the first lines."""

from __future__ import annotations

import re
from pathlib import Path

from expertrack.capture.parsers import llmc, nanogpt
from expertrack.capture.parsers.base import MAX_LINE_CHARS, Parser, finished_line
from expertrack.capture.parsers.generic import GenericParser, JsonlParser, generic_metrics, json_object
from expertrack.capture.parsers.llmc import Gpt2CudaParser, LlmcParser
from expertrack.capture.parsers.nanogpt import NanoGPTParser
from expertrack.capture.parsers.rules import load_rules

_BUILTINS: dict[str, type[Parser]] = {
    parser.name: parser for parser in (Gpt2CudaParser, LlmcParser, NanoGPTParser, JsonlParser, GenericParser)
}


def parser_names() -> list[str]:
    """Names of the built-in parsers, in the order detection prefers them."""
    return list(_BUILTINS)


def get_parser(name_or_path: str) -> Parser:
    """A fresh parser: a built-in one by name, or one built from a TOML rules file by path.

    Raises ValueError (RulesError for a bad rules file) with a message that says what was wrong.
    """
    builtin = _BUILTINS.get(name_or_path)
    if builtin is not None:
        return builtin()
    path = Path(name_or_path)
    if path.is_file():
        return load_rules(path)
    if path.suffix == ".toml" or "/" in name_or_path or path.exists():
        raise ValueError(f"parser rules file {name_or_path!r} not found (or not a file)")
    raise ValueError(
        f"unknown parser {name_or_path!r}: use one of {', '.join(_BUILTINS)}, or the path of a TOML rules file"
    )


def detect(first_lines: list[str]) -> str:
    """The built-in parser that best reads these first lines of output; "generic" when none fits.

    Each family counts the lines that only it prints (llm.c's table header and step lines, nanoGPT's
    "iter N: loss", JSON objects with a number). A "+---+" border counts for llm.c only beside another llm.c
    line: any table printer (tabulate, PrettyTable) draws one. Lines that the generic parser reads metrics
    from and no family parser reads at all count for "generic": a family wins only with more lines than
    that, so a table printed before ``epoch: 0, loss: 1.9`` lines does not hide them. Ties between families
    go to the earlier in parser_names(). Within the llm.c family, "gpt2-cuda" is named when the seed
    trainer's own lines outnumber llm.c's (both names parse the same way).
    """
    scores = {"llmc-family": 0, "nanogpt": 0, "jsonl": 0}
    seed_lines = llmc_lines = borders = generic_only = considered = 0
    readers = (LlmcParser(), NanoGPTParser())
    for raw in first_lines:
        line = finished_line(raw) if "\r" in raw else raw
        if not line.strip() or len(line) > MAX_LINE_CHARS:
            continue
        considered += 1
        seed = _matches(llmc.GPT2_CUDA_SIGNATURES, line)
        upstream = _matches(llmc.LLMC_SIGNATURES, line)
        seed_lines += seed
        llmc_lines += upstream
        family = seed or upstream or _matches(llmc.FAMILY_SIGNATURES, line)
        if llmc.BORDER.match(line):
            borders += 1
        else:
            scores["llmc-family"] += family
        scores["nanogpt"] += _matches(nanogpt.SIGNATURES, line)
        json = False
        if line.lstrip().startswith("{"):
            parsed = json_object(line)
            json = parsed is not None and bool(parsed[1])
            scores["jsonl"] += json
        read_by_family = [bool(reader.feed(line)) for reader in readers]  # every reader sees every line, in order
        if not json and not any(read_by_family) and generic_metrics(line)[1]:
            generic_only += 1
    if scores["llmc-family"]:
        scores["llmc-family"] += borders
    best = max(scores, key=lambda family: scores[family])  # max() keeps the first of equal scores
    if scores[best] <= generic_only:
        return GenericParser.name  # nothing recognised, or fewer lines than those only generic reads
    if best == "jsonl" and scores["jsonl"] * 2 < considered:
        return GenericParser.name  # a few JSON objects among free text: generic reads both
    if best == "llmc-family":
        return Gpt2CudaParser.name if seed_lines > llmc_lines else LlmcParser.name
    return best


def _matches(signatures: tuple[re.Pattern[str], ...], line: str) -> bool:
    return any(signature.match(line) for signature in signatures)
