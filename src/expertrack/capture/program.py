"""The program ``expertrack run`` wraps: its command, its resolved executable and, for a Python program, the
interpreter it runs on and that interpreter's packages (issue 18, item 5).

The run's environment (``expertrack.environment``) describes the process that called ``init``: for a wrapped
program that is expertrack's own interpreter and virtual environment, which may not be the program's at all
(``expertrack run -- python3 train.py`` with expertrack installed by pipx, or a system Python). So the program is
described apart, in the run's file ``program.json``, and ``expertrack show`` prints both, each named.

A Python program is recognised by its executable (``python``, ``python3.11``, ...) or by a ``#!`` line that names
Python (``./train.py``, and console scripts such as ``torchrun`` or ``accelerate``). Its interpreter is asked once,
in a child process of its own started from a thread after the program (``ProgramProbe``), so the program's start
never waits for it; the answer is stored when it comes, and ``expertrack run`` waits for it at most
``PROBE_TIMEOUT_S`` at the end of a very short program.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from typing import TYPE_CHECKING, Any

from expertrack.redact import redact_argv

if TYPE_CHECKING:
    from expertrack.run import Run

PROGRAM_FILE = "program.json"
PROBE_TIMEOUT_S = 10.0
_PYTHON_NAME = re.compile(r"python(\d+(\.\d+)*)?[tmd]*(\.exe)?$")
_SHEBANG_BYTES = 512
# Run by the program's interpreter: what it is and every distribution it can import, read from metadata only.
_PROBE = """
import json, platform, sys
from importlib import metadata
packages = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    if name and name not in packages:
        packages[name] = dist.version
print(json.dumps({"executable": sys.executable, "version": platform.python_version(),
                  "implementation": platform.python_implementation(), "prefix": sys.prefix,
                  "packages": dict(sorted(packages.items(), key=lambda item: item[0].lower()))}))
"""


def resolve_executable(command: str, env: dict[str, str] | None = None) -> str | None:
    """The file the command's first word runs (a path as given, else looked up on ``PATH``), as an absolute path.

    Links are not resolved: a virtual environment's ``bin/python`` links to the base interpreter, and only when
    called by its own path does it see the environment's packages.
    """
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    found = shutil.which(command, path=path) if os.sep not in command else command
    return os.path.abspath(found) if found and os.path.isfile(found) else None


def python_interpreter(executable: str, env: dict[str, str] | None = None) -> str | None:
    """The interpreter that runs ``executable``: itself when it is Python, the one its ``#!`` line names when
    that is Python (``#!/usr/bin/env python3`` is looked up on ``PATH``), else None."""
    if _PYTHON_NAME.match(os.path.basename(executable)):
        return executable
    try:
        with open(executable, "rb") as file:
            head = file.read(_SHEBANG_BYTES)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", errors="replace").split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]  # env -S python3 -u
        return resolve_executable(words[0], env) if words and _PYTHON_NAME.match(words[0]) else None
    if words and _PYTHON_NAME.match(os.path.basename(words[0])):
        return resolve_executable(words[0], env)
    return None


def ask_python(interpreter: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What ``interpreter`` says about itself and its packages; raises OSError or ValueError when it cannot."""
    done = subprocess.run(
        [interpreter, "-c", _PROBE],
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise ValueError(f"exit status {done.returncode}: {done.stderr.strip()[-200:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    return answer


def describe_program(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``command`` (secret-looking option values redacted), ``executable`` and, for a Python program,
    ``python``: the interpreter's own answer, or ``python_error`` saying why it could not be asked."""
    described: dict[str, Any] = {"command": redact_argv(list(argv))}
    executable = resolve_executable(argv[0], env) if argv else None
    described["executable"] = executable
    interpreter = python_interpreter(executable, env) if executable else None
    if interpreter is not None:
        try:
            described["python"] = ask_python(interpreter, env)
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            described["python_error"] = f"{interpreter}: {type(err).__name__}: {err}"
    return described


class ProgramProbe:
    """Describes the program on a thread of its own and stores the answer with the run."""

    def __init__(self, argv: list[str], run: Run) -> None:
        self._argv, self._run = list(argv), run
        self._thread = threading.Thread(target=self._describe, name="expertrack-program", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait(self, timeout: float = PROBE_TIMEOUT_S) -> None:
        """Wait for the answer to be stored (call before finishing the run); gives up after ``timeout``."""
        self._thread.join(timeout)

    def _describe(self) -> None:
        try:
            described = describe_program(self._argv, dict(os.environ))
            self._run.attach_file(PROGRAM_FILE, json.dumps(described, indent=1).encode())
        except Exception as exc:  # outer boundary: describing the program must never disturb it (rule 1)
            self._run.notifier.once("program", f"could not describe the program ({type(exc).__name__}: {exc})")


def program_of(files: Any) -> dict[str, Any] | None:
    """The stored description of a wrapped run's program (``files`` has ``file(name)``: an ApiRun), or None."""
    data = files.file(PROGRAM_FILE)
    if not data:
        return None
    try:
        described = json.loads(data)
    except ValueError:
        return None
    return described if isinstance(described, dict) else None
