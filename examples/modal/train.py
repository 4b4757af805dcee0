"""expertrack on Modal: the reference experiment on a cloud GPU, or your compiled trainer under `expertrack run`.

    modal run examples/modal/train.py                          # dense vs MoE vs MoE-no-LB, on a GPU
    modal run examples/modal/train.py --command "./train -n 5000"   # a trainer that only prints (llm.c style)
    expertrack run -- modal run examples/modal/train.py        # ... and watch the runs live on this machine
    expertrack pull --from modal://expertrack-runs             # get every run back, afterwards

Each run's live store is on the container's own disk; a snapshot of it goes to the Volume every 30 s, at its end,
and when Modal preempts the container (SIGTERM). The W&B mirror is on only when the `wandb-secret` secret exists.
See README.md beside this file and docs/modal.md.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

import modal

APP_NAME = "expertrack-example"
VOLUME_NAME = "expertrack-runs"
MOUNT = "/expertrack"  # the Volume's mount in the container: snapshots go to MOUNT/runs/RUN_ID/CONTAINER.sqlite
GPU = "A10G"
TIMEOUT_S = 2 * 60 * 60
RETRIES = 2  # a preempted or failed call is run again (after INITIAL_DELAY_S) ...
INITIAL_DELAY_S = 10.0
WANDB_SECRET = "wandb-secret"  # holds WANDB_API_KEY; optional: without it the runs stay in expertrack only
SNAPSHOT_EVERY_S = 30.0
# ... and the runs it was training are streamed to the caller's terminal as tagged lines (expertrack.stream)
ENV = {"EXPERTRACK_STREAM": "stdout"}

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("torch>=2.1,<3", "numpy>=1.24,<3", "pandas>=2.0,<4", "click>=8.1,<9", "rich>=13,<16")
    .pip_install("wandb>=0.18,<1", "psutil>=5.9,<8", "nvidia-ml-py>=12,<14")
    .add_local_python_source("expertrack")  # this checkout's expertrack, as installed here
)
app = modal.App(APP_NAME, image=image)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
retries = modal.Retries(max_retries=RETRIES, initial_delay=INITIAL_DELAY_S, backoff_coefficient=1.0)
resources = {"gpu": GPU, "volumes": {MOUNT: volume}, "timeout": TIMEOUT_S, "retries": retries, "env": ENV}


def run_experiment(
    steps: int | None = None,
    quick: bool = False,
    volume_dir: str = MOUNT,
    local_dir: str | None = None,
    snapshot_every: float = SNAPSHOT_EVERY_S,
) -> list[str]:
    """The reference experiment (expertrack.demo), its runs snapshotted to ``volume_dir``; returns their ids.

    The demo keeps no checkpoints, so a retried call trains its runs again, as new runs; a trainer that keeps
    checkpoints continues its run instead (``expertrack.snapshots.resume_id``; docs/modal.md, "Preemption").
    """
    import torch

    from expertrack.demo.experiment import DemoOptions, run_demo
    from expertrack.integrations.modal import snapshot_to_volume

    snapshot_to_volume(volume_dir, volume, every=snapshot_every)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = local_dir or tempfile.mkdtemp(prefix="expertrack-")  # the live store, on the container's own disk
    results = run_demo(DemoOptions(dir=where, steps=steps, quick=quick, device=device, figures=False))
    return [result.run_id for result in results if result.run_id]


def run_command(
    argv: list[str], volume_dir: str = MOUNT, local_dir: str | None = None, snapshot_every: float = SNAPSHOT_EVERY_S
) -> int:
    """A program that only prints its metrics (a compiled trainer), tracked by ``expertrack run``; returns its
    exit status. The wrapper is a child process: this function commits the Volume for it."""
    from expertrack import snapshots
    from expertrack.integrations.modal import committing

    snapshots.enable(volume_dir, every=snapshot_every)  # the wrapper inherits it through the environment
    where = local_dir or tempfile.mkdtemp(prefix="expertrack-")
    wrapper = [sys.executable, "-m", "expertrack", "run", "--dir", where, "--"]
    with committing(volume, every=snapshot_every):
        return subprocess.run([*wrapper, *argv]).returncode


# ``volume_dir`` and ``local_dir`` are there for ``Function.local()`` (tests): in the container, the defaults.
@app.function(**resources)
def train(
    steps: int | None = None, quick: bool = False, volume_dir: str = MOUNT, local_dir: str | None = None
) -> list[str]:
    """The reference experiment, without W&B."""
    return run_experiment(steps, quick, volume_dir, local_dir)


@app.function(**resources, secrets=[modal.Secret.from_name(WANDB_SECRET)])
def train_with_wandb(
    steps: int | None = None, quick: bool = False, volume_dir: str = MOUNT, local_dir: str | None = None
) -> list[str]:
    """The reference experiment, mirrored to W&B (the secret sets WANDB_API_KEY)."""
    return run_experiment(steps, quick, volume_dir, local_dir)


@app.function(**resources)
def train_command(argv: list[str], volume_dir: str = MOUNT, local_dir: str | None = None) -> int:
    """Your compiled trainer (built into the image: see README.md), without W&B."""
    return run_command(argv, volume_dir, local_dir)


@app.function(**resources, secrets=[modal.Secret.from_name(WANDB_SECRET)])
def train_command_with_wandb(argv: list[str], volume_dir: str = MOUNT, local_dir: str | None = None) -> int:
    """Your compiled trainer, mirrored to W&B."""
    return run_command(argv, volume_dir, local_dir)


def has_secret(name: str) -> bool:
    """Whether the Modal secret ``name`` exists in this workspace (a lookup through your Modal token)."""
    try:
        modal.Secret.from_name(name).hydrate()
    except modal.exception.NotFoundError:
        return False
    return True


@app.local_entrypoint()
def main(steps: int = 0, quick: bool = False, command: str = "") -> None:
    wandb = has_secret(WANDB_SECRET)
    print(f"W&B mirror: {'on' if wandb else f'off (no {WANDB_SECRET!r} secret)'}")
    if command:
        function = train_command_with_wandb if wandb else train_command
        status = function.remote(command.split())
        print(f"the command exited with status {status}")
    else:
        function = train_with_wandb if wandb else train
        run_ids = function.remote(steps or None, quick)
        print(f"runs: {' '.join(run_ids)}")
    print(f"get them back: expertrack pull --from modal://{VOLUME_NAME}")
