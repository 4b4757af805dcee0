"""Starting a follower: a background process that follows one run in the store (the W&B mirror, replication).

Both are ``python -m MODULE --store PATH --run ID ...``, started the same way: the real ``wandb`` on the path even
when this process runs under the stand-in (``expertrack run --as-wandb``), this same expertrack importable, and a
session of their own, so Ctrl-C and a closed terminal reach training, not the follower (which then makes its last
move when it sees the run end). On Linux a session is also a scheduler autogroup: a follower that lowers its
group's weight takes CPU from the machine's idle time rather than from training's share.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any


def spawn(
    module: str,
    store_path: Path,
    run_id: str,
    args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
    output: IO[Any] | int = subprocess.DEVNULL,
    errors: IO[Any] | int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``python -m module --store store_path --run run_id *args`` detached; ``env`` added to this process's
    environment and ``unset`` taken out of it; its stdout to ``output``, its stderr to ``errors`` (None: ours)."""
    from expertrack.standin import without_stand_in

    environment = {**without_stand_in(os.environ), **(env or {})}
    for name in unset:
        environment.pop(name, None)
    package_root = str(Path(__file__).resolve().parents[1])  # so the child imports this same expertrack
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, environment.get("PYTHONPATH")) if p)
    command = [sys.executable or "python3", "-m", module, "--store", str(store_path), "--run", run_id, *args]
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=errors,
        env=environment,
        close_fds=True,
        start_new_session=True,
    )
