"""``mirror.start``: when it mirrors, what it says (once), and that a missing wandb never gets in the way."""

from __future__ import annotations

from pathlib import Path

import pytest

from expertrack import mirror
from expertrack.mirror.state import read_state
from expertrack.paths import store_path
from expertrack.store import SQLiteStore

from ..conftest import run_python
from .wandb_offline import wait_for_mirror

# Makes `import wandb` fail as if it were not installed (find_spec included), in every process that reads it.
NO_WANDB_SITECUSTOMIZE = """
import sys
class _NoWandb:
    def find_spec(self, name, path=None, target=None):
        if name == "wandb" or name.startswith("wandb."):
            raise ModuleNotFoundError("No module named 'wandb'", name=name)
        return None
sys.meta_path.insert(0, _NoWandb())
"""

TWO_RUNS = """
import expertrack
for i in range(2):
    run = expertrack.init(project="p", id=f"r{i}", mirror="auto")
    for s in range(50):
        run.log({"loss": 1.0 / (s + 1)})
    run.finish()
print("ok")
"""


@pytest.fixture
def clean_wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_CONFIG_DIR", "NETRC"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc, no ~/.config/wandb/settings
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    mirror._said.clear()


def test_configured_by_offline_mode_key_or_netrc(
    clean_wandb_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert mirror.wandb_configured() is None
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert mirror.wandb_configured() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert mirror.wandb_configured() is None
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert mirror.wandb_configured() == "api key"
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = tmp_path / "home" / ".netrc"
    netrc.parent.mkdir(parents=True, exist_ok=True)
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    assert mirror.wandb_configured() == "netrc"


def test_auto_without_configuration_says_once_and_keeps_local(
    clean_wandb_env: None, tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for run_id in ("a", "b"):
        mirror.start(run_id, store_path(tracking_dir), "auto")
    err = capsys.readouterr().err
    assert err.count("kept locally only") == 1 and "W&B is not configured" in err
    assert not (tracking_dir / "mirror").exists()  # no mirror process was started


def test_off_and_bad_modes_start_nothing(
    clean_wandb_env: None, tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror.start("a", store_path(tracking_dir), "off")
    assert capsys.readouterr().err == ""
    mirror.start("a", store_path(tracking_dir), "sometimes")
    assert "mirror='sometimes' is not one of auto, wandb, off" in capsys.readouterr().err


def test_start_never_raises(
    clean_wandb_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    blocker = tmp_path / "file"
    blocker.write_text("")  # the store's directory is a file: the mirror's log cannot be created
    mirror.start("a", blocker / "store.db", "wandb")
    assert "the W&B mirror could not start" in capsys.readouterr().err


def test_wandb_not_importable_runs_work_with_one_message(tmp_path: Path, tracking_dir: Path) -> None:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_WANDB_SITECUSTOMIZE)
    env = {"PYTHONPATH": str(shim), "WANDB_MODE": "offline", "EXPERTRACK_DIR": str(tracking_dir)}
    proc = run_python(TWO_RUNS, env=env)
    assert proc.stdout.strip() == "ok"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "expertrack: wandb is not installed, so the run is kept locally only (to mirror runs to W&B: "
        "pip install 'expertrack[wandb]', then `expertrack sync`)"
    ]
    with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
        for run_id in ("r0", "r1"):
            assert store.run(run_id).state == "finished"
            assert store.point_counts(run_id) == {"loss": 50}
            assert read_state(store, run_id) is None


def test_broken_wandb_install_is_recorded_as_never_started(tmp_path: Path, tracking_dir: Path) -> None:
    shim = tmp_path / "shim"
    (shim / "wandb").mkdir(parents=True)
    (shim / "wandb" / "__init__.py").write_text("raise ImportError('broken install (test)')\n")
    env = {"PYTHONPATH": str(shim), "WANDB_MODE": "offline", "EXPERTRACK_DIR": str(tracking_dir)}
    proc = run_python(TWO_RUNS.replace("range(2)", "range(1)"), env=env)
    assert "mirroring run r0" in proc.stderr  # the package is there, so the mirror process starts...
    wait_for_mirror(tracking_dir, "r0")
    with SQLiteStore(store_path(tracking_dir), readonly=True) as store:
        assert store.run("r0").state == "finished"
        assert mirror.mirror_status(store, "r0") == (
            "never started (wandb could not be imported: broken install (test))"
        )  # ...and says why it could not mirror


def test_init_mode_offline_mirrors_offline_without_credentials(
    clean_wandb_env: None, monkeypatch: pytest.MonkeyPatch, tracking_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    launched: list[tuple[str, dict[str, str] | None]] = []
    monkeypatch.setattr(mirror, "launch", lambda run_id, path, env=None: launched.append((run_id, env)))
    mirror.start("a", store_path(tracking_dir), "auto", wandb_mode="offline")
    assert launched == [("a", {"WANDB_MODE": "offline"})]
    assert "mirroring run a to offline run directories" in capsys.readouterr().err
    mirror.start("b", store_path(tracking_dir), "auto")  # no credentials, online: not mirrored
    assert len(launched) == 1
