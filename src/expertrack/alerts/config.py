"""Which alert rules run, with which settings: defaults, ``init(alerts=...)``, a TOML file, ``--alert`` specs.

Every form ends as one table per rule (``RULES`` lists them, with their defaults and what each setting means in
docs/alerts.md). Unknown rules, unknown settings and values of the wrong type are refused with a ``ValueError``
that names them: a typo must not silently turn an alert off.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_FILE = "EXPERTRACK_ALERTS"  # a TOML file of rules for every run that does not say otherwise
ENV_WEBHOOK = "EXPERTRACK_WEBHOOK"
WEBHOOK_TIMEOUT_S = 5.0

# Each rule's settings and defaults. "enabled" says whether it runs when nothing configures it (DESIGN: NaN, stall
# and the MoE rules are on for every run; the MoE rules only ever see values when router metrics are logged).
RULES: dict[str, dict[str, Any]] = {
    "nan": {"enabled": True, "keys": ["*"]},
    "spike": {
        "enabled": False,
        "keys": ["loss", "train/loss", "train_loss", "*/loss"],
        "factor": 6.0,  # how many robust standard deviations above the window's median
        "window": 100,  # points of the key's own recent history
        "patience": 50,  # steps within which a spike must come back down
    },
    "dead_expert": {"enabled": True, "key": "moe/tokens_per_expert", "logs": 10},
    "maxvio": {"enabled": True, "key": "moe/maxvio", "threshold": 3.0, "logs": 10},
    "entropy": {"enabled": True, "key": "moe/router_entropy_norm", "fraction": 0.25, "logs": 3, "baseline_logs": 3},
    "stall": {"enabled": True, "minutes": 10.0},
}


@dataclass
class AlertSettings:
    """The resolved settings: ``rules[name]`` is the table of rule ``name``; ``webhook`` a URL or None."""

    rules: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(RULES))
    webhook: str | None = None
    webhook_timeout: float = WEBHOOK_TIMEOUT_S

    def enabled(self, name: str) -> bool:
        """Whether rule ``name`` runs."""
        return bool(self.rules[name]["enabled"])

    def apply(self, table: Mapping[str, Any], where: str) -> None:
        """Merge a document of rule tables (``{"spike": {"factor": 5}}``, ``{"nan": False}``, ``{"webhook": url}``)."""
        for name, value in table.items():
            if name == "webhook":
                self.webhook = _typed(where, name, value, str) or None
            elif name == "webhook_timeout":
                self.webhook_timeout = _positive(where, name, _typed(where, name, value, float))
            elif name not in RULES:
                raise ValueError(f"{where}: unknown alert rule {name!r}; rules are {', '.join(RULES)}")
            elif isinstance(value, bool):
                self.rules[name]["enabled"] = value
            elif isinstance(value, Mapping):
                self._set(name, value, where)
            else:
                raise ValueError(f"{where}: rule {name!r} takes true, false or a table of settings, not {value!r}")

    def _set(self, name: str, settings: Mapping[str, Any], where: str) -> None:
        rule = self.rules[name]
        rule["enabled"] = True  # configuring a rule turns it on, unless the table says enabled = false
        for option, value in settings.items():
            if option not in rule:
                known = ", ".join(k for k in rule if k != "enabled")
                raise ValueError(f"{where}: rule {name!r} has no setting {option!r}; its settings are {known}")
            default = RULES[name][option]
            if isinstance(default, list):
                items = [value] if isinstance(value, str) else value
                if not isinstance(items, list) or not all(isinstance(k, str) for k in items):
                    raise ValueError(f"{where}: {name}.{option} takes a list of key names or globs, not {value!r}")
                rule[option] = list(items)
            else:
                checked = _typed(where, f"{name}.{option}", value, type(default))
                rule[option] = checked if isinstance(checked, (bool, str)) else _positive(where, option, checked)


def resolve(alerts: Any = None) -> AlertSettings:
    """Settings from what ``init(alerts=...)`` was given.

    None: the defaults, then ``$EXPERTRACK_ALERTS`` (a TOML file) if set. False or "off": every rule off.
    True: the defaults. A path (str or PathLike ending in .toml): that TOML file. A mapping: rule tables. A list
    of ``--alert`` specs (see ``apply_spec``). ``$EXPERTRACK_WEBHOOK`` gives the webhook unless one is set.
    """
    settings = AlertSettings()
    if alerts is None and os.environ.get(ENV_FILE):
        alerts = os.environ[ENV_FILE]
    if alerts is False or alerts == "off":
        for rule in settings.rules.values():
            rule["enabled"] = False
    elif isinstance(alerts, (str, os.PathLike)):
        apply_file(settings, Path(alerts))
    elif isinstance(alerts, Mapping):
        settings.apply(alerts, "init(alerts=...)")
    elif isinstance(alerts, Sequence):
        for spec in alerts:
            apply_spec(settings, str(spec))
    elif alerts is not None and alerts is not True:
        raise ValueError(f"init(alerts=...) takes a dict, a TOML file's path, a list of specs or False, not {alerts!r}")
    if settings.webhook is None:
        settings.webhook = os.environ.get(ENV_WEBHOOK) or None
    return settings


def apply_file(settings: AlertSettings, path: Path) -> None:
    """Merge the rule tables of a TOML file (same shape as the dict form; docs/alerts.md has an example)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"alert rules file {path}: cannot read it ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"alert rules file {path}: not valid TOML ({exc})") from None
    settings.apply(document, f"alert rules file {path}")


def apply_spec(settings: AlertSettings, spec: str) -> None:
    """One ``--alert`` value: ``RULE`` (on, defaults), ``RULE:off``, ``RULE:name=value,name=value``, ``off``
    (every rule off; later specs turn single ones on again), or a ``.toml`` file."""
    where = f"--alert {spec}"
    spec = spec.strip()
    if spec in ("off", "none"):
        for rule in settings.rules.values():
            rule["enabled"] = False
        return
    if spec.endswith(".toml"):
        apply_file(settings, Path(spec))
        return
    name, _, options = spec.partition(":")
    if options in ("", "on"):
        settings.apply({name: True}, where)
    elif options == "off":
        settings.apply({name: False}, where)
    else:
        table: dict[str, Any] = {}
        for item in options.split(","):
            option, equals, text = item.partition("=")
            if not equals:
                raise ValueError(f"{where}: {item!r} is not name=value")
            table[option.strip()] = _spec_value(text.strip(), RULES.get(name, {}).get(option.strip()))
        settings.apply({name: table}, where)


def _spec_value(text: str, default: Any) -> Any:
    """A command-line value, typed like the setting's default (lists are separated by "|")."""
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, list):
        return [part for part in text.split("|") if part]
    if isinstance(default, (int, float)):
        try:
            return float(text) if isinstance(default, float) or "." in text else int(text)
        except ValueError:
            return text  # refused with its name by _typed
    return text


def _typed(where: str, name: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{where}: {name} takes {kind.__name__ if kind is not float else 'a number'}, not {value!r}")
    return value


def _positive(where: str, name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{where}: {name} must be greater than 0, got {value!r}")
    return value
