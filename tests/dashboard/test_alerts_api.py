"""``GET /api/runs/{ref}/alerts``: the alerts stored with a run, in the shape the dashboard's markers read."""

from __future__ import annotations

import math
from pathlib import Path

from starlette.testclient import TestClient

import expertrack
from expertrack.dashboard.app import create_app


def test_alerts_endpoint_returns_each_alert_in_the_agreed_shape(tmp_path: Path) -> None:
    run = expertrack.init(project="dash", name="diverged", dir=tmp_path, mirror="off")
    run.log({"train/loss": 2.0})
    run.log({"train/loss": math.nan})
    run.log({"train/loss": 2.0, "grad_norm": math.inf})
    run.flush()
    run.alert("checkpoint saved", "step 2")
    run.finish()
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1:8080")
    body = client.get(f"/api/runs/{run.id}/alerts").json()
    assert [set(a) for a in body] == [{"rule", "key", "step", "value", "time", "message"}] * 3
    assert [(a["rule"], a["key"], a["step"], a["value"]) for a in body] == [
        ("nan", "train/loss", 1, "NaN"),  # JSON has no NaN: the dashboard's own spelling, as in the other routes
        ("nan", "grad_norm", 2, "Infinity"),
        ("wandb", None, 2, None),
    ]
    assert body[0]["message"] == "train/loss is nan at step 1" and body[0]["time"] > 1.7e9
    assert client.get("/api/runs/diverged/alerts").json() == body  # a run's name works, as in every route
    assert client.get("/api/runs/nope/alerts").status_code == 404


def test_a_run_without_alerts_gives_an_empty_list(tmp_path: Path) -> None:
    run = expertrack.init(project="dash", dir=tmp_path, mirror="off")
    run.log({"loss": 1.0})
    run.finish()
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1:8080")
    assert client.get(f"/api/runs/{run.id}/alerts").json() == []
