"""Alert settings from every source (init(alerts=...) as a dict, a TOML file, --alert specs, $EXPERTRACK_ALERTS),
and clear errors naming what is wrong and where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from expertrack.alerts import RULES, resolve


def enabled(settings: Any) -> set[str]:
    return {name for name in RULES if settings.enabled(name)}


def test_defaults_are_nan_stall_and_the_moe_rules() -> None:
    assert enabled(resolve()) == {"nan", "stall", "dead_expert", "maxvio", "entropy"}
    assert enabled(resolve(False)) == set() and enabled(resolve(True)) == enabled(resolve())


def test_dict_form_turns_rules_on_and_off_and_sets_their_settings() -> None:
    settings = resolve({"spike": {"factor": 4, "keys": "val/loss"}, "nan": False, "webhook": "http://x/y"})
    assert enabled(settings) == {"spike", "stall", "dead_expert", "maxvio", "entropy"}
    assert settings.rules["spike"]["factor"] == 4.0 and settings.rules["spike"]["keys"] == ["val/loss"]
    assert settings.webhook == "http://x/y"


def test_toml_file_and_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text("webhook_timeout = 2\nspike = { patience = 10 }\n[stall]\nminutes = 30\n[maxvio]\nenabled = false")
    settings = resolve(str(path))
    assert settings.rules["spike"]["patience"] == 10 and settings.rules["stall"]["minutes"] == 30.0
    assert not settings.enabled("maxvio") and settings.webhook_timeout == 2.0
    monkeypatch.setenv("EXPERTRACK_ALERTS", str(path))
    monkeypatch.setenv("EXPERTRACK_WEBHOOK", "http://hook/")
    from_env = resolve()
    assert from_env.rules["stall"]["minutes"] == 30.0 and from_env.webhook == "http://hook/"
    # the file applies only when init() is given nothing
    assert resolve(["stall:minutes=5"]).rules["stall"]["minutes"] == 5.0


def test_cli_specs() -> None:
    settings = resolve(["off", "spike:keys=loss|val/*,window=50", "maxvio:threshold=1.5", "nan", "nan:off"])
    assert enabled(settings) == {"spike", "maxvio"}
    assert settings.rules["spike"]["keys"] == ["loss", "val/*"] and settings.rules["spike"]["window"] == 50
    assert settings.rules["maxvio"]["threshold"] == 1.5


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ({"nans": True}, "init(alerts=...): unknown alert rule 'nans'; rules are nan, spike"),
        ({"spike": {"factr": 2}}, "rule 'spike' has no setting 'factr'; its settings are keys, factor, window"),
        ({"spike": {"window": "big"}}, "spike.window takes int, not 'big'"),
        ({"stall": {"minutes": -1}}, "minutes must be greater than 0, got -1"),
        ({"nan": {"keys": [1]}}, "nan.keys takes a list of key names or globs"),
        (["stall:minutes"], "--alert stall:minutes: 'minutes' is not name=value"),
        ("missing.toml", "alert rules file missing.toml: cannot read it"),
        (3, "init(alerts=...) takes a dict, a TOML file's path, a list of specs or False, not 3"),
    ],
)
def test_bad_settings_are_refused_naming_what_and_where(alerts: Any, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        resolve(alerts)
    assert message in str(info.value)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[stall\nminutes = 3\n")
    with pytest.raises(ValueError, match=r"alert rules file .*bad.toml: not valid TOML"):
        resolve(str(path))


def test_init_refuses_bad_alert_settings_before_creating_a_run(tmp_path: Path) -> None:
    import expertrack

    with pytest.raises(ValueError, match="unknown alert rule 'spikes'"):
        expertrack.init(project="x", dir=tmp_path, mirror="off", alerts={"spikes": True})
    assert not (tmp_path / "store.db").exists()


def test_wandb_alert_on_a_disabled_run_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import expertrack

    run = expertrack.init(project="x", dir=tmp_path, mode="disabled")
    expertrack.alert("diverged", "loss 1e9")
    run.finish()
    assert "alert [wandb] run disabled: diverged: loss 1e9" in capsys.readouterr().err
    assert not (tmp_path / "store.db").exists()
