"""Environment capture: what `show` reports about a run's origin, and the secrets it must never store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from expertrack import environment
from expertrack.environment import (
    REDACTED,
    collect_environment,
    is_secret_name,
    redact_argv,
    redact_env,
    redact_url_credentials,
)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.mark.parametrize(
    "name",
    [
        "WANDB_API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "OPENAI_API_KEY",
        "GITHUB_TOKEN",
        "DB_PASSWORD",
        "MLFLOW_TRACKING_PASSWORD",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "--api-key",
        "--token",
        "--password",
        "apiKey",
        "accessToken",
        "wandb.api_key",
        "HTTP_AUTHORIZATION",
    ],
)
def test_secret_looking_names_are_recognised(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "HOME",
        "PWD",
        "TOKENIZERS_PARALLELISM",
        "GIT_AUTHOR_NAME",
        "CUDA_VISIBLE_DEVICES",
        "--lr",
        "KEYS_DIR",
    ],
)
def test_ordinary_names_are_kept(name: str) -> None:
    assert not is_secret_name(name)


def test_redact_env_blanks_secret_values_and_url_credentials() -> None:
    env = {
        "WANDB_API_KEY": "wk-123",
        "HF_TOKEN": "hf_abc",
        "AWS_SECRET_ACCESS_KEY": "aws-xyz",
        "TOKENIZERS_PARALLELISM": "false",
        "DATABASE_URL": "postgres://alice:hunter2@db.local:5432/runs",
        "PROXY": "http://proxy.local:3128",
    }
    redacted = redact_env(env)
    assert redacted["WANDB_API_KEY"] == REDACTED
    assert redacted["HF_TOKEN"] == REDACTED
    assert redacted["AWS_SECRET_ACCESS_KEY"] == REDACTED
    assert redacted["TOKENIZERS_PARALLELISM"] == "false"
    assert redacted["DATABASE_URL"] == f"postgres://{REDACTED}@db.local:5432/runs"
    assert redacted["PROXY"] == "http://proxy.local:3128"
    assert env["HF_TOKEN"] == "hf_abc", "the caller's dict is not modified"


def test_redact_argv_handles_equals_separate_value_and_overrides() -> None:
    argv = [
        "train.py",
        "--api-key=sk-1",
        "--token",
        "tok-2",
        "--password=pw3",
        "--lr",
        "3e-4",
        "wandb.api_key=sk-4",
        "--data",
        "https://bob:pw5@example.com/data.bin",
        "--auth",
        "--verbose",
    ]
    out = redact_argv(argv)
    assert out == [
        "train.py",
        f"--api-key={REDACTED}",
        "--token",
        REDACTED,
        f"--password={REDACTED}",
        "--lr",
        "3e-4",
        f"wandb.api_key={REDACTED}",
        "--data",
        f"https://{REDACTED}@example.com/data.bin",
        "--auth",
        "--verbose",  # a following option is not a value: nothing is hidden that was not secret
    ]


def test_url_without_password_is_kept() -> None:
    assert redact_url_credentials("ssh://git@github.com/a/b") == "ssh://git@github.com/a/b"
    assert (
        redact_url_credentials("see https://u:p@h/x and https://h/y") == f"see https://{REDACTED}@h/x and https://h/y"
    )


def test_collect_environment_never_stores_a_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_API_KEY", "very-secret-wandb")
    monkeypatch.setenv("HF_TOKEN", "very-secret-hf")
    monkeypatch.setenv("MY_SERVICE_URL", "https://me:very-secret-url@svc.local/")
    env = collect_environment(["train.py", "--api-key", "very-secret-arg", "--token=very-secret-tok"])
    dumped = json.dumps(env)
    assert "very-secret" not in dumped
    assert env["env"]["WANDB_API_KEY"] == REDACTED
    assert env["command"] == ["train.py", "--api-key", REDACTED, f"--token={REDACTED}"]


def test_collect_environment_reports_the_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["my_script.py", "--epochs", "3"])
    env = collect_environment()
    assert env["command"] == ["my_script.py", "--epochs", "3"]
    assert env["cwd"] == str(tmp_path)
    assert env["pid"] == os.getpid()
    assert env["executable"] == sys.executable
    assert env["python"] == ".".join(str(v) for v in sys.version_info[:3])
    assert env["host"] and env["user"] and env["platform"]
    assert env["packages"]["numpy"] == metadata.version("numpy")
    assert "capture_errors" not in env
    json.dumps(env)  # stored as JSON: every value must serialise


def test_package_versions_do_not_import_packages(tmp_path: Path) -> None:
    # A fresh interpreter: in this one another test may already have imported torch.
    code = (
        "import sys, json\n"
        "from expertrack.environment import collect_environment\n"
        "env = collect_environment()\n"
        "print(json.dumps({'heavy': [m for m in ('torch', 'wandb', 'transformers') if m in sys.modules],"
        " 'packages': env['packages'], 'gpus': 'gpus' in env}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result["heavy"] == []
    assert result["gpus"] is False, "GPUs are only asked for when the program imported torch"
    assert result["packages"]["expertrack"] == metadata.version("expertrack")


def test_gpu_names_come_from_an_already_imported_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]
    cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: len(names), get_device_name=lambda i: names[i]
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert collect_environment([])["gpus"] == names
    monkeypatch.delitem(sys.modules, "torch")
    assert "gpus" not in collect_environment([])


def test_a_failing_part_is_left_out_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise OSError("no hostname today")

    monkeypatch.setattr(environment.socket, "gethostname", broken)
    env = collect_environment([])
    assert "host" not in env
    assert env["capture_errors"] == ["host"]
    assert env["pid"] == os.getpid(), "the other parts are still captured"


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    done = subprocess.run(["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@needs_git
def test_git_commit_and_dirty_flag_in_a_real_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('hi')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    _git(repo, "remote", "add", "origin", "https://alice:pat-123@git.example.com/alice/repo.git")
    monkeypatch.chdir(repo)

    clean = collect_environment([])["git"]
    assert clean["commit"] == _git(repo, "rev-parse", "HEAD")
    assert len(clean["commit"]) == 40
    assert clean["dirty"] is False
    assert Path(clean["root"]).resolve() == repo.resolve()
    assert clean["remote"] == f"https://{REDACTED}@git.example.com/alice/repo.git"

    (repo / "train.py").write_text("print('changed')\n")
    assert collect_environment([])["git"]["dirty"] is True
    _git(repo, "checkout", "-q", "--", "train.py")
    (repo / "outputs.log").write_text("untracked outputs do not make the code dirty\n")
    assert collect_environment([])["git"]["dirty"] is False


@needs_git
def test_no_git_outside_a_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    env = collect_environment([])
    assert "git" not in env
    assert "capture_errors" not in env


def test_no_git_installed_is_not_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable to be found
    env = collect_environment([])
    assert "git" not in env
    assert "capture_errors" not in env
