"""Each alert rule fires exactly once per episode on a crafted series logged through a real run, and what it
raised is stored with the run (rule, key, step, value, time, message) and printed once on stderr."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import expertrack
from expertrack.alerts import resolve
from expertrack.alerts.engine import AlertEngine, RunIdentity
from expertrack.alerts.rules import DeadExpertRule
from expertrack.notify import Notifier
from expertrack.store.alerts import AlertRecord


def log_series(tmp_path: Path, rows: list[dict[str, Any]], alerts: Any = None) -> list[AlertRecord]:
    """Log ``rows`` (one per step, from step 0) to a fresh run and return the alerts stored for it."""
    run = expertrack.init(project="alerts", dir=tmp_path, mirror="off", alerts=alerts)
    for row in rows:
        run.log(row)
    run.finish()
    return expertrack.Api(tmp_path).run(run.id).alerts()


def noisy_loss(n: int, seed: int = 0) -> np.ndarray:
    """A decreasing training loss with noise, like the demo's."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    return 2.0 + 3.0 * np.exp(-steps / 80) + rng.normal(0, 0.05, n)


def test_nan_fires_once_per_episode_and_names_key_step_and_value(tmp_path: Path, capsys: Any) -> None:
    values = [1.0] * 10 + [math.nan] * 5 + [1.0] * 5 + [math.inf, math.nan] + [1.0] * 3
    found = log_series(tmp_path, [{"loss": v, "lr": 0.1} for v in values])
    assert [(a.rule, a.key, a.step) for a in found] == [("nan", "loss", 10), ("nan", "loss", 20)]
    assert math.isnan(found[0].value) and found[1].value == math.inf
    assert found[0].message == "loss is nan at step 10" and found[0].time > 0
    err = capsys.readouterr().err
    assert err.count("alert [nan]") == 2 and err.count("loss is inf at step 20") == 1


def test_nan_rule_limited_to_named_keys(tmp_path: Path) -> None:
    rows = [{"loss": math.nan, "grad_norm": math.nan}]
    found = log_series(tmp_path, rows, alerts={"nan": {"keys": ["grad_*"]}})
    assert [(a.rule, a.key) for a in found] == [("nan", "grad_norm")]


def test_a_spike_that_stays_fires_once_and_one_that_recovers_never(tmp_path: Path) -> None:
    loss = noisy_loss(600)
    loss[200:205] += 3.0  # recovered within the patience: no alert
    loss[400:] += 3.0  # never recovered: one alert, at the step the spike began
    found = log_series(tmp_path, [{"train/loss": float(v)} for v in loss], alerts={"spike": True})
    assert [(a.rule, a.key, a.step) for a in found] == [("spike", "train/loss", 400)]
    assert found[0].value == pytest.approx(loss[400])
    assert "has not recovered after 50 steps" in found[0].message


def test_a_second_spike_after_recovery_is_a_second_episode(tmp_path: Path) -> None:
    loss = noisy_loss(800, seed=1)
    loss[300:380] += 4.0
    loss[600:700] += 4.0
    found = log_series(tmp_path, [{"loss": float(v)} for v in loss], alerts=["spike:patience=20"])
    assert [(a.rule, a.step) for a in found] == [("spike", 300), ("spike", 600)]


def test_maxvio_fires_once_after_n_logs_above_the_threshold(tmp_path: Path) -> None:
    maxvio = [0.5] * 5 + [4.0] * 12 + [0.5] * 3 + [4.0] * 4 + [0.4] + [3.5] * 5
    found = log_series(tmp_path, [{"moe/maxvio": v} for v in maxvio], alerts={"maxvio": {"logs": 5}})
    assert [(a.rule, a.key, a.step, a.value) for a in found] == [
        ("maxvio", "moe/maxvio", 9, 4.0),  # 5th log above 3.0 (steps 5..9); the run of 4 later is too short
        ("maxvio", "moe/maxvio", 29, 3.5),
    ]
    assert "above 3 for 5 logs since step 5" in found[0].message


def test_router_entropy_collapse_fires_once_against_its_starting_value(tmp_path: Path) -> None:
    entropy = [0.98, 0.97, 0.99] + list(np.linspace(0.95, 0.3, 20)) + [0.1] * 10 + [0.9] * 3 + [0.1] * 3
    found = log_series(tmp_path, [{"moe/router_entropy_norm": float(v)} for v in entropy])
    steps = [a.step for a in found]
    assert [a.rule for a in found] == ["entropy", "entropy"]
    assert steps[1] == 38  # the second collapse, after the entropy came back up at steps 33-35
    assert "starting value 0.98" in found[0].message


def test_dead_experts_fire_once_per_expert_grouped_by_layer(tmp_path: Path) -> None:
    rows = []
    for step in range(30):
        counts = np.full((2, 4), 100, dtype=np.int64)
        if step >= 5:
            counts[1, 2] = 0  # dies at step 5: its 10th empty log is step 14
        if 10 <= step < 25:
            counts[0, [0, 3]] = 0  # two experts of layer 0 die together, and come back at step 25
        rows.append({"moe/tokens_per_expert": counts})
    found = log_series(tmp_path, rows)
    assert [(a.rule, a.key, a.step, a.value) for a in found] == [
        ("dead_expert", "moe/tokens_per_expert", 14, 1.0),
        ("dead_expert", "moe/tokens_per_expert", 19, 2.0),
    ]
    assert found[0].message.startswith("layer 1: expert 2 received no tokens in the last 10 logs")
    assert found[1].message.startswith("layer 0: experts 0, 3 received no tokens")


def test_rules_that_are_off_raise_nothing(tmp_path: Path) -> None:
    rows = [{"loss": math.nan, "moe/maxvio": 7.0}] * 20
    assert log_series(tmp_path, rows, alerts=False) == []
    assert log_series(tmp_path, rows, alerts=["off", "maxvio"])[0].rule == "maxvio"


def batches(values: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    cuts = np.cumsum(sizes)[:-1]
    return np.split(values, cuts)


@pytest.mark.parametrize("sizes", [[1] * 900, [7] * 128 + [4], [900], [250, 1, 1, 648]])
def test_alerts_do_not_depend_on_how_points_are_batched_into_flushes(sizes: list[int]) -> None:
    """The writer hands over whatever arrived since its last flush: one point or thousands."""
    loss = noisy_loss(900, seed=3)
    loss[300:] += 5.0
    loss[100] = math.nan
    maxvio = np.where(np.arange(900) > 500, 4.0, 0.5)
    settings = resolve({"spike": True})
    engine = AlertEngine(settings, RunIdentity("id", "name", "project"), Notifier())
    start = 0
    for part in batches(np.arange(900), sizes):
        steps = list(range(start, start + len(part)))
        engine.scalars("loss", steps, loss[start : start + len(part)])
        engine.scalars("moe/maxvio", steps, maxvio[start : start + len(part)])
        start += len(part)
    raised = sorted((a.rule, a.step) for a in engine.take())
    assert raised == [("maxvio", 510), ("nan", 100), ("spike", 300)]


def test_a_rule_that_fails_is_said_once_and_costs_no_point(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, key: str, step: int, array: Any) -> list[Any]:
        raise RuntimeError("a bug in the rule")  # stands for any bug: the engine must contain it

    monkeypatch.setattr(DeadExpertRule, "check_array", broken)
    run = expertrack.init(project="alerts", dir=tmp_path, mirror="off")
    for step in range(3):
        run.log({"moe/tokens_per_expert": np.zeros((2, 4), np.int64), "loss": math.nan if step == 1 else 1.0})
        run.flush()
    run.finish()
    stored = expertrack.Api(tmp_path).run(run.id)
    assert len(stored.arrays("moe/tokens_per_expert")[0]) == 3 and stored.point_count("loss") == 3
    assert [a.rule for a in stored.alerts()] == ["nan"]  # the other rules go on
    err = capsys.readouterr().err
    assert err.count("alert rule 'dead_expert' failed (RuntimeError: a bug in the rule)") == 1


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=599), max_size=30),
    spikes=st.lists(st.tuples(st.integers(0, 580), st.integers(1, 120), st.floats(0.5, 8.0)), max_size=4),
    nans=st.lists(st.integers(0, 599), max_size=5),
)
def test_any_batching_of_a_random_series_raises_the_same_alerts(
    cuts: list[int], spikes: list[tuple[int, int, float]], nans: list[int]
) -> None:
    loss = noisy_loss(600, seed=7)
    for start, length, height in spikes:
        loss[start : start + length] += height
    loss[nans] = math.nan

    def raised(parts: list[int]) -> list[tuple[str, int | None]]:
        engine = AlertEngine(resolve({"spike": {"patience": 30}}), RunIdentity("i", "n", "p"), Notifier(), quiet=True)
        bounds = [0, *sorted(set(parts)), 600]
        for lo, hi in itertools.pairwise(bounds):
            engine.scalars("loss", list(range(lo, hi)), loss[lo:hi])
        return sorted((a.rule, a.step) for a in engine.take())  # rules take a batch in turn: order may differ

    assert raised(cuts) == raised([])
