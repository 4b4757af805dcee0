"""The ``import wandb`` stand-in: ``expertrack run --as-wandb`` and ``EXPERTRACK_AS_WANDB=1`` make a script's own
``import wandb`` record into expertrack (nanoGPT's ``wandb_log=True`` path here, the frameworks in their own test
files), the live W&B mirror still runs the real wandb, and a wandb ``dir=`` never moves the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import expertrack
from expertrack.compat import Artifact
from expertrack.errors import ExpertrackError
from expertrack.mirror.wandb_log import read_run
from expertrack.standin import STAND_IN_DIR

from ..mirror.wandb_offline import offline_env, wait_for_mirror, wandb_logs
from .training import EXPERTRACK, check, child_env, series, the_run

pytestmark = pytest.mark.e2e
QUIET: dict = {"capture_output": True, "text": True, "timeout": 120}

# nanoGPT's train.py with wandb_log=True, as it calls wandb (master process only; evaluation every 2 iterations)
NANOGPT = """
import sys
import wandb
wandb_project, wandb_run_name = "owt", "gpt2-tiny"
config = {"n_layer": 2, "learning_rate": 6e-4, "wandb_log": True}
wandb.init(project=wandb_project, name=wandb_run_name, config=config, dir=sys.argv[1] if len(sys.argv) > 1 else None)
print("wandb is", wandb.__file__)
for iter_num in range(0, 10, 2):
    losses = {"train": 4.0 - 0.25 * iter_num, "val": 4.1 - 0.25 * iter_num}
    wandb.log({"iter": iter_num, "train/loss": losses["train"], "val/loss": losses["val"], "lr": 6e-4, "mfu": 12.5})
"""


def write_script(directory: Path, text: str = NANOGPT) -> str:
    path = directory / "train.py"
    path.write_text(text)
    return str(path)


def as_wandb(
    workdir: Path, *options: str, args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [EXPERTRACK, "run", "--as-wandb", *options, "--", sys.executable, write_script(workdir), *args]
    return subprocess.run(command, cwd=workdir, env=env or child_env(workdir), capture_output=True, text=True)


def assert_nanogpt_run(run: expertrack.ApiRun) -> None:
    assert run.name == "gpt2-tiny" and run.project == "owt" and run.state == "finished"
    assert run.config == {"n_layer": 2, "learning_rate": 6e-4, "wandb_log": True}
    assert series(run, "iter") == {0: 0.0, 1: 2.0, 2: 4.0, 3: 6.0, 4: 8.0}
    assert series(run, "train/loss") == {0: 4.0, 1: 3.5, 2: 3.0, 3: 2.5, 4: 2.0}
    assert series(run, "val/loss")[4] == pytest.approx(2.1)


def test_nanogpt_wandb_log_runs_unchanged_with_as_wandb(tmp_path: Path) -> None:
    proc = check(as_wandb(tmp_path, "--dir", "chosen"))
    assert "_stand_in/wandb/__init__.py" in proc.stdout  # the script's own `import wandb` got expertrack
    assert "runs go to" in proc.stderr and str(tmp_path / "chosen") in proc.stderr
    assert_nanogpt_run(the_run(tmp_path / "chosen"))


def test_the_exit_status_and_the_end_of_the_run_are_the_programs_own(tmp_path: Path) -> None:
    script = "import sys, wandb\nwandb.init()\nwandb.log({'loss': 1.0})\nsys.exit(3)\n"
    write_script(tmp_path, script)
    command = [EXPERTRACK, "run", "--as-wandb", "--dir", "runs", "--project", "from-cli", "--"]
    command += [sys.executable, str(tmp_path / "train.py")]
    proc = subprocess.run(command, cwd=tmp_path, env=child_env(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    run = the_run(tmp_path / "runs")
    assert run.state == "failed" and run.exit_code == 3 and run.project == "from-cli"


def test_options_that_the_programs_own_init_decides_are_refused_clearly(tmp_path: Path) -> None:
    proc = as_wandb(tmp_path, "--name", "x", "--tag", "t")
    assert proc.returncode == 2
    assert "--name, --tag cannot be used with --as-wandb" in proc.stderr
    missing = subprocess.run(
        [EXPERTRACK, "run", "--as-wandb", "--", "no-such-trainer-xyz"],
        cwd=tmp_path,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 127 and "command not found: no-such-trainer-xyz" in missing.stderr


def test_the_live_mirror_still_sends_to_real_wandb_in_that_mode(tmp_path: Path) -> None:
    wandb_dir = tmp_path / "wandb-files"
    wandb_dir.mkdir()
    env = offline_env(wandb_dir, **{k: v for k, v in child_env(tmp_path).items() if not k.startswith("WANDB")})
    env.update(WANDB_MODE="offline")  # and EXPERTRACK_MIRROR=off, which --mirror overrides
    check(as_wandb(tmp_path, "--dir", "chosen", "--mirror", "wandb", env=env))
    run = the_run(tmp_path / "chosen")
    assert_nanogpt_run(run)
    wait_for_mirror(tmp_path / "chosen", run.id)
    (log,) = wandb_logs(wandb_dir)  # written by the real wandb, in the mirror process
    sent = read_run(log)
    assert sent.run_id == run.id and sent.project == "owt"
    assert [row["train/loss"] for row in sent.history] == [4.0, 3.5, 3.0, 2.5, 2.0]


def test_a_wandb_dir_from_the_script_never_moves_the_run(tmp_path: Path) -> None:
    # with $EXPERTRACK_DIR: there; without: ./expertrack-runs, as for any run; never the wandb dir
    env = child_env(tmp_path, EXPERTRACK_AS_WANDB="1", EXPERTRACK_DIR=str(tmp_path / "chosen"))
    script = write_script(tmp_path)
    check(subprocess.run([sys.executable, script, "."], cwd=tmp_path, env=env, capture_output=True, text=True))
    assert_nanogpt_run(the_run(tmp_path / "chosen"))
    del env["EXPERTRACK_DIR"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check(subprocess.run([sys.executable, script, "w"], cwd=elsewhere, env=env, capture_output=True, text=True))
    assert_nanogpt_run(the_run(elsewhere / "expertrack-runs"))
    assert not (elsewhere / "store.db").exists() and not (elsewhere / "w").exists()


def test_an_explicit_init_dir_is_a_tracking_directory_and_wins_over_the_environment(
    tmp_path: Path, tracking_dir: Path
) -> None:
    # expertrack.init(dir=...) names where the run goes (code that says so means it); $EXPERTRACK_DIR is next
    run = expertrack.init(project="p", dir=tmp_path / "explicit", mirror="off")
    run.log({"loss": 1.0})
    run.finish()
    assert the_run(tmp_path / "explicit").id == run.id
    assert not tracking_dir.exists()


def test_artifacts_are_said_once_and_using_one_raises_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = expertrack.init(project="p", dir=tmp_path, mirror="off")
    artifact = Artifact("model", type="model")
    artifact.add_file(__file__)
    assert run.log_artifact(artifact) is artifact and expertrack.compat.log_artifact(artifact) is artifact
    assert capsys.readouterr().err.count("W&B artifacts are not stored by expertrack") == 1
    with pytest.raises(ExpertrackError, match="W&B artifacts are kept by W&B"):
        run.use_artifact("entity/project/model:v0")
    run.finish()


def test_the_mirror_looks_for_the_real_wandb_past_the_stand_in(tmp_path: Path) -> None:
    # find_spec("wandb") finds the stand-in; whether to start the mirror depends on the real package being there
    code = "import wandb\nfrom expertrack.mirror import wandb_importable\nprint(wandb.__file__, wandb_importable())"
    pytest.importorskip("wandb")
    with_real = check(
        subprocess.run([sys.executable, "-c", code], env=child_env(tmp_path, EXPERTRACK_AS_WANDB="1"), **QUIET)
    )
    assert with_real.stdout.split()[1:] == ["True"] and "_stand_in" in with_real.stdout
    # -S: no site-packages, so no real wandb (and no .pth); the stand-in and expertrack from PYTHONPATH
    env = child_env(
        tmp_path, PYTHONPATH=os.pathsep.join([str(STAND_IN_DIR), str(Path(expertrack.__file__).parents[1])])
    )
    without = check(subprocess.run([sys.executable, "-S", "-c", code], env=env, **QUIET))
    assert without.stdout.split()[1:] == ["False"] and "_stand_in" in without.stdout


def test_expertrack_sync_uses_the_real_wandb_even_with_the_variable_set(tmp_path: Path) -> None:
    # a shell that exported EXPERTRACK_AS_WANDB=1 for its trainers still syncs with the real wandb
    pytest.importorskip("wandb")
    run = expertrack.init(project="p", name="later", dir=tmp_path / "runs", mirror="off")
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)})
    run.finish()
    wandb_dir = tmp_path / "wandb-files"
    wandb_dir.mkdir()
    env = offline_env(wandb_dir, EXPERTRACK_AS_WANDB="1", TMPDIR=str(tmp_path))
    proc = subprocess.run([EXPERTRACK, "sync", "--all", "--dir", str(tmp_path / "runs")], env=env, **QUIET)
    assert proc.returncode == 0, proc.stderr
    (log,) = wandb_logs(wandb_dir)
    assert [row["loss"] for row in read_run(log).history] == [1.0, 0.5, 1.0 / 3]


def test_activate_from_python_before_the_first_import(tmp_path: Path) -> None:
    code = (
        "import expertrack.standin\nexpertrack.standin.activate()\nimport wandb\n"
        "run = wandb.init(project='nb', dir='.')\nwandb.log({'loss': 0.5})\nwandb.finish()\nprint(wandb.__file__)"
    )
    env = child_env(tmp_path, EXPERTRACK_DIR=str(tmp_path / "chosen"))
    proc = check(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, **QUIET))
    assert "_stand_in" in proc.stdout
    assert series(the_run(tmp_path / "chosen"), "loss") == {0: 0.5}
