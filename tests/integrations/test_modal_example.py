"""examples/modal with the real ``modal`` package and no cloud: the app imports, its functions declare what the
README says (read from the function objects), and the training function run through ``Function.local()`` against
a directory standing in for the Volume's mount writes one snapshot per run, equal to the run it trained."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import expertrack
from expertrack import snapshots
from expertrack.store import SQLiteStore
from tests.conftest import expertrack_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "modal"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("expertrack_modal_example", EXAMPLE / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def readme_settings() -> dict[str, str]:
    """The README's table of settings: setting -> the first `quoted` value in its row."""
    rows = re.findall(r"^\| (\w+) \| `([^`]+)`", (EXAMPLE / "README.md").read_text(), re.M)
    return dict(rows)


def declared(function: Any) -> dict[str, Any]:
    """What a Modal function declares, read from the function object: its spec (GPU, volumes, secrets) and the
    values its definition is built from (timeout, retry policy)."""
    from modal._utils.async_utils import synchronizer

    inner = synchronizer._translate_in(function)
    spec = inner._spec
    built = dict(zip(inner._load.__code__.co_freevars, (c.cell_contents for c in inner._load.__closure__)))
    return {
        "gpu": spec.gpus,
        "volumes": {str(path): repr(volume) for path, volume in spec.volumes.items()},
        "secrets": [repr(secret) for secret in spec.secrets],
        "timeout": built["timeout"],
        "retries": built["retry_policy"].retries,
        "retry_delay_ms": built["retry_policy"].initial_delay_ms,
    }


def test_the_functions_declare_what_the_readme_says(example: ModuleType) -> None:
    said = readme_settings()
    assert said["GPU"] == example.GPU and said["Volume"] == example.VOLUME_NAME and said["secret"] == "wandb-secret"
    functions = {"train": False, "train_with_wandb": True, "train_command": False, "train_command_with_wandb": True}
    for name, with_wandb in functions.items():
        got = declared(getattr(example, name))
        assert got["gpu"] == said["GPU"]
        assert got["volumes"] == {"/expertrack": f"modal.Volume.from_name('{said['Volume']}')"}
        assert got["timeout"] == int(said["timeout"]) and got["retries"] == int(said["retries"])
        assert got["retry_delay_ms"] == 10_000
        wandb = [s for s in got["secrets"] if "wandb" in s]
        assert wandb == ([f"modal.Secret.from_name('{said['secret']}')"] if with_wandb else []), name
        assert "Secret.from_dict([EXPERTRACK_STREAM])" in got["secrets"]  # the environment, whose value is:
    assert said["environment"] == "EXPERTRACK_STREAM=stdout" and example.ENV == {"EXPERTRACK_STREAM": "stdout"}


@pytest.fixture(scope="module")
def trained(example: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path, Path]:
    """The training function run once through ``.local()``: its run ids, the stand-in Volume, its live store."""
    where = tmp_path_factory.mktemp("modal")
    volume, live = where / "volume", where / "container"
    with pytest.warns(UserWarning, match="executing locally"):  # modal says the Volume is not mounted: ours stands in
        run_ids = example.train.local(steps=12, quick=True, volume_dir=str(volume), local_dir=str(live))
    return run_ids, volume, live


def same_runs(a: Path, b: Path, run_id: str) -> None:
    """The run has the same scalar series, point for point, in the stores ``a`` and ``b``."""
    with SQLiteStore(a, readonly=True) as one, SQLiteStore(b, readonly=True) as other:
        keys = one.scalar_keys(run_id)
        assert other.scalar_keys(run_id) == keys and "train/loss" in keys
        for key in keys:
            ours, theirs = one.read_scalars(run_id, key), other.read_scalars(run_id, key)
            assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(ours, theirs, strict=True)), key


def test_the_training_function_writes_one_snapshot_per_run_equal_to_the_run(
    trained: tuple[list[str], Path, Path],
) -> None:
    run_ids, volume, live = trained
    assert len(run_ids) == 3  # dense, moe, moe-no-lb
    found = snapshots.snapshot_files(volume)
    assert sorted(found) == sorted(run_ids) and all(len(paths) == 1 for paths in found.values())
    for run_id in run_ids:
        with SQLiteStore(found[run_id][0], readonly=True) as snap:
            assert snap.run(run_id).state == "finished" and [r.id for r in snap.runs()] == [run_id]
        same_runs(found[run_id][0], live / "store.db", run_id)


def test_pull_merges_the_snapshots_twice_into_one_run_per_training_run(
    trained: tuple[list[str], Path, Path], tmp_path: Path
) -> None:
    run_ids, volume, live = trained
    local = tmp_path / "mine"
    first = expertrack_cli("pull", "--from", str(volume), "--dir", str(local))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("pulled 3 runs from") and " 0 points" not in first.stdout
    again = expertrack_cli("pull", "--from", str(volume), "--dir", str(local))
    assert again.returncode == 0 and "0 points, 0 arrays, 0 file chunks new" in again.stdout  # nothing twice
    runs = expertrack.Api(local).runs()
    assert sorted(run.id for run in runs) == sorted(run_ids) and {run.state for run in runs} == {"finished"}
    for run_id in run_ids:
        same_runs(local / "store.db", live / "store.db", run_id)


# a trainer that only prints, in the second seed's format (a stand-in for a compiled llm.c binary)
PRINTING_TRAINER = """
for step in range(1, 21):
    print(f"step {step:4d}/20: train loss {5.0 / step:.6f} (12.0 ms, 84000 tok/s)", flush=True)
print("val loss 4.567890 (avg_train 5.123, gap +0.456)")
"""


def test_the_command_variant_snapshots_the_run_expertrack_run_makes(example: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(PRINTING_TRAINER)
    volume, live = tmp_path / "volume", tmp_path / "container"
    with pytest.warns(UserWarning, match="executing locally"):
        status = example.train_command.local(
            [sys.executable, str(tmp_path / "train.py")], volume_dir=str(volume), local_dir=str(live)
        )
    assert status == 0
    [(run_id, [path])] = snapshots.snapshot_files(volume).items()
    with SQLiteStore(path, readonly=True) as snap:
        steps, _times, values = snap.read_scalars(run_id, "train_loss")
        assert snap.run(run_id).state == "finished"
    assert len(steps) == 20 and values.tolist() == pytest.approx([5.0 / step for step in range(1, 21)], abs=1e-6)


def test_pull_from_a_malformed_modal_location_says_what_to_write(tmp_path: Path) -> None:
    done = expertrack_cli("pull", "--from", "modal://", "--dir", str(tmp_path))
    assert done.returncode == 1 and "modal://VOLUME or modal://VOLUME/PATH" in done.stderr
