"""One redaction rule for environment variables, the command line and the flags parsed into config: a test per
pattern, then what `show`, the dashboard's API and the W&B mirror's config carry for a real wrapped run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import expertrack
from expertrack.capture.parsers import parse_argv_config
from expertrack.dashboard.app import create_app
from expertrack.mirror.sync import sync_runs
from expertrack.paths import store_path
from expertrack.redact import REDACTED, is_secret_name, redact_argv, redact_config, redact_env
from tests.conftest import expertrack_cli
from tests.mirror.fakes import FakeWandb

# (flags as typed, the config key they give, the secret that must not be stored)
FLAG_CASES = [
    (["--api-key", "sk-abc123"], "api-key", "sk-abc123"),
    (["--token=xyz789"], "token", "xyz789"),
    (["--password", "hunter2"], "password", "hunter2"),
    (["--secret-key", "s3cr3tK"], "secret-key", "s3cr3tK"),
    (["--passwd=pw4ssw0rd"], "passwd", "pw4ssw0rd"),
    (["--auth", "alice:opensesame"], "auth", "opensesame"),
    (["--slack-webhook", "https://hooks.slack.com/services/T000/B000/XXXXhook"], "slack-webhook", "XXXXhook"),
    (["--pass", "-1234567"], "pass", "1234567"),  # a negative number is the option's value, not another flag
]
# (flags as typed, the config key, the secret): secrets inside values of ordinary flags
VALUE_CASES = [
    (["--data", "https://bob:pw5word@example.com/data.bin"], "data", "pw5word"),
    (["--header", "Authorization: Bearer eyJhbGciOi.J9.sig"], "header", "eyJhbGciOi"),
    (["--header=Authorization: Basic YWxpY2U6aHVudGVyMg=="], "header", "YWxpY2U6aHVudGVyMg"),
    (["--notify", "https://discord.com/api/webhooks/123/tok3n"], "notify", "tok3n"),
]


ALL_FLAG_CASES = FLAG_CASES + VALUE_CASES


@pytest.mark.parametrize(("flags", "key", "secret"), ALL_FLAG_CASES, ids=[c[1] for c in ALL_FLAG_CASES])
def test_flag_pattern_is_redacted_in_config_and_command_line(flags: list[str], key: str, secret: str) -> None:
    argv = ["./train", *flags, "--lr", "3e-4"]
    config = parse_argv_config(argv)
    assert key in config and secret not in json.dumps(config)
    assert REDACTED in str(config[key])
    assert config["lr"] == 3e-4
    command = redact_argv(argv)
    assert secret not in " ".join(command) and REDACTED in " ".join(command)
    assert command[-2:] == ["--lr", "3e-4"]


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T1/B1/abcdef", "abcdef"),
        ("SSHPASS", "rootpw", "rootpw"),
        ("WANDB_API_KEY", "wk-123", "wk-123"),
        ("HF_TOKEN", "hf_abc", "hf_abc"),
        ("CURL_HEADER", "Authorization: Bearer tok-999", "tok-999"),
        ("NOTIFY_URL", "https://hooks.slack.com/services/T2/B2/ghijkl", "ghijkl"),
        ("DATABASE_URL", "postgres://alice:hunter2@db/runs", "hunter2"),
    ],
)
def test_environment_pattern_is_redacted(name: str, value: str, secret: str) -> None:
    redacted = redact_env({name: value, "PATH": "/usr/bin"})
    assert secret not in redacted[name] and REDACTED in redacted[name]
    assert redacted["PATH"] == "/usr/bin"


@pytest.mark.parametrize("name", ["num_key_value_heads", "key_dim", "--lr", "TOKENIZERS_PARALLELISM", "n_pass_x"])
def test_hyperparameters_that_only_look_secret_are_kept(name: str) -> None:
    if name == "n_pass_x":  # "pass" is a whole part: the rule prefers hiding a number to leaking a password
        assert is_secret_name(name)
        return
    assert not is_secret_name(name)
    assert parse_argv_config(["./train", f"--{name.strip('-')}", "8"]) == {name.strip("-"): 8}


def test_config_keeps_structure_and_bare_flags() -> None:
    config = {"auth": True, "db": {"password": "x", "host": "h"}, "tokens": [1, 2], "hooks": ["Bearer abc"]}
    assert redact_config(config) == {
        "auth": True,
        "db": {"password": REDACTED, "host": "h"},
        "tokens": [1, 2],
        "hooks": [f"Bearer {REDACTED}"],
    }


SECRETS = ["sk-abc123", "xyz789", "hunter2", "s3cr3tK", "pw4ssw0rd", "opensesame", "pw5word", "eyJhbG", "Zm9vYmFy"]
ENV_SECRETS = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T9/B9/slacksecret", "SSHPASS": "sshsecret"}


def test_a_wrapped_run_carries_no_secret_to_show_dashboard_or_wandb(tmp_path: Path, tracking_dir: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('step 1/1: train loss 2.500000 (1.0 ms, 100 tok/s)')\n")
    flags = [
        *("--api-key", "sk-abc123", "--token=xyz789", "--password", "hunter2", "--secret-key", "s3cr3tK"),
        *("--passwd=pw4ssw0rd", "--auth", "alice:opensesame", "--data", "https://bob:pw5word@example.com/d"),
        *("--header", "Authorization: Bearer eyJhbGciOi", "--lr", "3e-4"),
    ]
    proc = expertrack_cli(
        "run", "--mirror", "off", "--config", "hf_token=Zm9vYmFy", "--", sys.executable, str(script), *flags,
        env=ENV_SECRETS,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run,) = expertrack.Api(tracking_dir).runs()
    assert run.config["lr"] == 3e-4 and run.config["api-key"] == REDACTED
    everything = [*SECRETS, "slacksecret", "sshsecret"]

    shown = expertrack_cli("show", run.id, "--env")
    assert shown.returncode == 0 and "api-key" in shown.stdout and "SSHPASS" in shown.stdout
    assert [s for s in everything if s in shown.stdout] == []

    client = TestClient(create_app(tracking_dir), base_url="http://127.0.0.1:8080")
    api_text = client.get(f"/api/runs/{run.id}").text + client.get("/api/runs").text
    assert "api-key" in api_text and [s for s in everything if s in api_text] == []

    fake = FakeWandb()
    (result,) = sync_runs(store_path(tracking_dir), [run.id], fake)
    assert result.action == "sent"
    sent_config = json.dumps(fake.runs[0].kwargs["config"])
    assert "api-key" in sent_config and [s for s in everything if s in sent_config] == []
