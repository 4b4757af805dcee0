"""The child's command-line flags as config: ``./train -b 4703 --lr=3e-4 --flag`` gives
{"b": 4703, "lr": 0.0003, "flag": True}.

Rules: ``--name=value`` and ``-n value`` / ``--name value`` give name: value; a flag followed by another
flag (or by nothing) gives name: True; a value that looks like a negative number (``-x -1``) is a value,
not a flag. Values become int, float or bool when they plainly are one, else stay text. Positional
arguments are not config and are skipped; so is everything after a bare ``--``. A later flag wins over an
earlier one of the same name. When the program is a Python interpreter, its own options and the script or
``-m module`` are skipped, so ``python -u train.py --lr 3e-4`` records only lr. Secrets are redacted by the
one rule of ``expertrack.redact``: ``--api-key sk-1`` gives {"api-key": "[redacted]"}.
"""

from __future__ import annotations

import os
import re
from typing import Any

from expertrack.capture.parsers.base import coerce_value
from expertrack.redact import redact_config

_NEGATIVE_NUMBER = re.compile(r"-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_PYTHON = re.compile(r"python[\d.]*(?:\.exe)?")
_PYTHON_OPTIONS_WITH_ARGUMENT = {"-W", "-X", "--check-hash-based-pycs"}


def parse_argv_config(argv: list[str]) -> dict[str, Any]:
    """Config entries read from a command line, ``argv[0]`` (the program) included in ``argv``."""
    args = list(argv[_first_program_argument(argv) :])
    config: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            break
        if not _is_flag(arg):
            continue  # a positional argument
        name, equals, value = arg.lstrip("-").partition("=")
        if not name:
            continue
        if equals:
            config[name] = coerce_value(value)
        elif i < len(args) and not _is_flag(args[i]) and args[i] != "--":
            config[name] = coerce_value(args[i])
            i += 1
        else:
            config[name] = True
    return redact_config(config)


def _is_flag(arg: str) -> bool:
    return arg.startswith("-") and arg != "-" and not _NEGATIVE_NUMBER.fullmatch(arg)


def _first_program_argument(argv: list[str]) -> int:
    """Index of the first argument that belongs to the program being run, past a Python interpreter's."""
    if not argv:
        return 0
    if not _PYTHON.fullmatch(os.path.basename(argv[0])):
        return 1
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        option = argv[i]
        if option in ("-m", "-c"):
            return i + 2  # the module or the code, then the program's own arguments
        i += 2 if option in _PYTHON_OPTIONS_WITH_ARGUMENT else 1
    return i + 1  # skip the script
