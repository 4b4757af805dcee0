"""The one rule that keeps secrets out of the store, and so out of ``show``, the dashboard and the W&B mirror.

It is applied to environment variables, to the recorded command line, and to the flags ``expertrack run``
parses into a run's config (docs/run.md, "Secrets"). Two checks:

- **by name**: a variable, option or config key whose name looks like a key, token, password, credential or
  webhook (``WANDB_API_KEY``, ``--api-key``, ``--token=``, ``--password``, ``--secret-key``, ``--passwd``,
  ``--auth``, ``SSHPASS``, ``SLACK_WEBHOOK_URL``) keeps its name and has its value replaced by ``[redacted]``;
- **by value**: inside any other value, ``user:password@`` in a URL, the token after ``Bearer`` or ``Basic``,
  and the secret path of a Slack or Discord webhook URL are replaced the same way.

Names are split into parts on ``_ - .`` and spaces and compared part by part, so ``TOKENIZERS_PARALLELISM`` and
``GIT_AUTHOR_NAME`` are kept. "key" is secret except where it names attention keys (``num_key_value_heads``,
``key_dim``): a model's hyperparameters must stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# A name is secret when one of its parts is one of these words...
_SECRET_PARTS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "sshpass",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "cookie",
        "webhook",
    }
)
# Standard variables that only look secret: the shell's working directories.
_NOT_SECRET = frozenset({"pwd", "oldpwd"})
# ...or ends with one of these (camelCase and run-together names: apiKey, accessToken, dbpassword, slackwebhook).
_SECRET_SUFFIXES = ("apikey", "token", "secret", "password", "passwd", "credentials", "credential", "webhook")
# "key" followed by one of these is attention's key, a hyperparameter: num_key_value_heads, key_dim, qk key_norm.
_ATTENTION_KEY_NEXT = frozenset({"value", "values", "dim", "dims", "size", "heads", "norm", "proj", "bias", "channels"})
_NAME_SPLIT = re.compile(r"[_\-.\s]+")

# scheme://user:password@host -> scheme://[redacted]@host (a bare user@host is kept: it is no secret).
_URL_CREDENTIALS = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@:]*:[^/\s@]*@")
# Authorization header values: "Bearer <token>", "Basic <base64 user:password>".
_AUTH_SCHEME = re.compile(r"(?P<keep>\b(?:Bearer|Basic)\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE)
# Webhook URLs carry their secret in the path: anyone holding one can post to the channel.
_WEBHOOK_URL = re.compile(
    r"(?P<keep>https?://(?:hooks\.slack\.com/(?:services|workflows|triggers)/|"
    r"(?:[\w-]+\.)?discord(?:app)?\.com/api/webhooks/))[^\s\"']+"
)
_NEGATIVE_NUMBER = re.compile(r"-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def is_secret_name(name: str) -> bool:
    """Whether a variable, option or config key name looks like it holds a key, token, password, credential
    or webhook (see the module docstring for the rule)."""
    lowered = name.strip("-").lower()
    if lowered in _NOT_SECRET:
        return False
    parts = [p for p in _NAME_SPLIT.split(lowered) if p]
    for index, part in enumerate(parts):
        if part == "key" and index + 1 < len(parts) and parts[index + 1] in _ATTENTION_KEY_NEXT:
            continue
        if part in _SECRET_PARTS or part.endswith(_SECRET_SUFFIXES):
            return True
    return False


def redact_url_credentials(text: str) -> str:
    """Replace ``user:password@`` inside any URL in ``text`` with ``[redacted]@``."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('keep')}{REDACTED}@", text)


def redact_text(text: str) -> str:
    """``text`` with the secrets a value can carry whatever its name replaced: URL passwords, ``Bearer`` and
    ``Basic`` tokens, and webhook URLs' secret paths."""
    text = redact_url_credentials(text)
    for pattern in (_AUTH_SCHEME, _WEBHOOK_URL):
        text = pattern.sub(lambda m: f"{m.group('keep')}{REDACTED}", text)
    return text


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env``, sorted by name, with secret-named variables' values replaced and other values cleaned
    by ``redact_text``."""
    return {name: REDACTED if is_secret_name(name) else redact_text(value) for name, value in sorted(env.items())}


def redact_argv(argv: list[str]) -> list[str]:
    """A copy of a command line with the values of secret-named options replaced.

    Handles ``--api-key=X``, ``--token X`` (the next argument, unless it is itself an option; a negative number
    is a value) and ``key=value`` overrides as Hydra and similar launchers take them (``wandb.api_key=X``);
    every other argument goes through ``redact_text``.
    """
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next and not _is_option(arg):
            out.append(REDACTED)
            redact_next = False
            continue
        redact_next = False
        name, sep, _value = arg.partition("=")
        if sep and name and " " not in name and is_secret_name(name):
            out.append(f"{name}={REDACTED}")
        elif _is_option(arg) and not sep and is_secret_name(arg):
            out.append(arg)
            redact_next = True
        else:
            out.append(redact_text(arg))
    return out


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a config (nested dicts and lists included) with secret-named keys' values replaced and text
    values cleaned by ``redact_text``. A bare flag (``--auth`` alone gives True) holds no secret and is kept."""
    return {str(k): _redact_value(v, is_secret_name(str(k))) for k, v in config.items()}


def _redact_value(value: Any, secret: bool) -> Any:
    if isinstance(value, Mapping):
        return redact_config(value)
    if isinstance(value, list | tuple):
        return [_redact_value(v, secret) for v in value]
    if secret and not isinstance(value, bool) and value is not None:
        return REDACTED
    return redact_text(value) if isinstance(value, str) else value


def _is_option(arg: str) -> bool:
    return arg.startswith("-") and arg != "-" and not _NEGATIVE_NUMBER.fullmatch(arg)
