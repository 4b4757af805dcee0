"""The dashboard's JSON API over a real store written with the logging API, through Starlette's TestClient."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

import expertrack
from expertrack.dashboard.app import create_app
from tests.dashboard.builders import (
    AFFINITY_STEPS,
    DOMAINS,
    XSS_NAME,
    affinity_at,
    dense_run,
    moe_run,
    spiky_run,
    utilization_at,
    xss_run,
)


def client_for(directory: Path) -> TestClient:
    return TestClient(create_app(directory), base_url="http://127.0.0.1:8080")


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8")


def error_of(response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


def test_runs_table_rows(tracking_dir: Path) -> None:
    dense = dense_run(tracking_dir)
    moe = moe_run(tracking_dir)
    body = client_for(tracking_dir).get("/api/runs", params={"metrics": "train/loss,val/loss"}).json()
    rows = {row["id"]: row for row in body["runs"]}
    assert set(rows) == {dense, moe}
    row = rows[dense]
    assert (row["name"], row["project"], row["group"], row["tags"], row["state"]) == (
        "dense-a",
        "study",
        "sweep",
        ["dense"],
        "finished",
    )
    assert row["last_step"] == 59
    assert row["config"] == {"lr": 3e-4, "model.layers": 2}
    assert row["metric_keys"] == ["train/loss", "train/lr", "val/loss"]
    loss = row["metrics"]["train/loss"]
    assert loss["goal"] == "min" and loss["last_step"] == 59 and loss["best_step"] == 59
    assert loss["last"] == pytest.approx(4.0 / 60 + 3e-4)
    assert rows[dense]["metrics"]["val/loss"]["best"] == pytest.approx(5.0 / 51)
    assert "val/loss" not in rows[moe]["metrics"]  # never logged there
    assert rows[moe]["array_keys"] == ["moe/affinity", "moe/router_entropy_norm_layers", "moe/utilization"]


def test_runs_etag_answers_304_when_nothing_changed(tracking_dir: Path) -> None:
    dense_run(tracking_dir)
    client = client_for(tracking_dir)
    first = client.get("/api/runs")
    again = client.get("/api/runs", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_no_store_yet_lists_nothing_and_creates_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "not-there"
    client = client_for(directory)
    assert client.get("/api/runs").json()["runs"] == []
    assert client.get("/api/runs/abc").status_code == 404
    assert not directory.exists()


def test_downsampling_keeps_every_spike(tracking_dir: Path) -> None:
    spikes = {61_234: 50.0, 7_777: -50.0, 99_999: 9.0}
    run_id = spiky_run(tracking_dir, 100_000, spikes)
    body = (
        client_for(tracking_dir).get("/api/series", params={"key": "train/loss", "runs": run_id, "buckets": 100}).json()
    )
    series = body["series"][run_id]
    steps, values = unpack(series["steps"]), unpack(series["values"])
    assert series["matched"] == 100_000 and series["count"] == len(values) <= 4 * 100
    assert "times" not in series  # a step axis draws no times: they are sent only with x=time
    for index, value in spikes.items():
        assert value in values and steps[values.tolist().index(value)] == index
    assert np.all(np.diff(steps) > 0)  # in step order, each point once


def test_series_after_step_sends_only_new_points(tracking_dir: Path) -> None:
    dense = dense_run(tracking_dir)
    moe = moe_run(tracking_dir)
    client = client_for(tracking_dir)
    body = client.get("/api/series", params={"key": "train/loss", "runs": f"{dense},{moe}", "after": "55,"}).json()
    assert unpack(body["series"][dense]["steps"]).tolist() == [56, 57, 58, 59]
    assert len(unpack(body["series"][moe]["steps"])) == 30  # empty "after": from the start
    body = client.get("/api/series", params={"key": "train/loss", "runs": dense, "after": "59"}).json()
    assert body["series"][dense]["count"] == 0 and body["series"][dense]["last_step"] == 59


def test_series_zoom_window_and_missing_key(tracking_dir: Path) -> None:
    dense = dense_run(tracking_dir)
    moe = moe_run(tracking_dir)
    client = client_for(tracking_dir)
    body = client.get("/api/series", params={"key": "val/loss", "runs": f"{dense},{moe}", "lo": 15, "hi": 40}).json()
    assert list(body["series"]) == [dense]  # the MoE run never logged val/loss
    assert unpack(body["series"][dense]["steps"]).tolist() == [20, 30, 40]


def test_run_page_detail_and_console_tail(tracking_dir: Path) -> None:
    dense = dense_run(tracking_dir)
    client = client_for(tracking_dir)
    detail = client.get(f"/api/runs/{dense}").json()
    assert detail["config"] == {"lr": 3e-4, "model": {"layers": 2}}
    assert detail["summary"]["train/loss"] == pytest.approx(4.0 / 60 + 3e-4)
    assert isinstance(detail["environment"], dict) and detail["files"] == ["console.log"]
    assert detail["dropped_points"] == 0  # the run page shows it when a run dropped any (issue 12)
    assert client.get("/api/runs/dense-a").json()["id"] == dense  # by name too
    whole = client.get(f"/api/runs/{dense}/console").json()
    assert whole["present"] and whole["text"].startswith("step 0\n") and not whole["truncated"]
    tail = client.get(f"/api/runs/{dense}/console", params={"offset": whole["next_offset"] - 8}).json()
    assert tail["text"] == "step 59\n" and tail["next_offset"] == whole["next_offset"]


def test_arrays_for_the_moe_view(tracking_dir: Path) -> None:
    moe = moe_run(tracking_dir)
    client = client_for(tracking_dir)
    latest = client.get(f"/api/runs/{moe}/array", params={"key": "moe/affinity"}).json()
    assert latest["steps"] == list(AFFINITY_STEPS) and latest["step"] == 20
    assert latest["shape"] == [2, 4, 3] and latest["domains"] == DOMAINS
    assert np.array_equal(latest["values"], affinity_at(20))
    between = client.get(f"/api/runs/{moe}/array", params={"key": "moe/affinity", "step": 15}).json()
    assert between["step"] == 10 and np.array_equal(between["values"], affinity_at(10))
    util = client.get(f"/api/runs/{moe}/array", params={"key": "moe/utilization", "step": 0}).json()
    assert np.allclose(util["values"], utilization_at(0))
    before = client.get(f"/api/runs/{moe}/array", params={"key": "moe/affinity", "step": -5})
    assert before.status_code == 404 and "first at step 0" in before.json()["error"]
    layers = client.get(f"/api/runs/{moe}/array_series", params={"key": "moe/router_entropy_norm_layers"}).json()
    assert unpack(layers["steps"]).tolist() == list(AFFINITY_STEPS)
    assert np.allclose(unpack(layers["columns"][1]), [0.7, 0.6, 0.5])


def test_user_strings_come_back_verbatim_as_json(tracking_dir: Path) -> None:
    run_id = xss_run(tracking_dir)
    row = client_for(tracking_dir).get("/api/runs").json()["runs"][0]
    assert row["name"] == XSS_NAME and row["group"] == "<b>group</b>"
    assert row["config"] == {"<i>key</i>": "<img src=y onerror=alert(4)>"}
    assert row["id"] == run_id  # escaping is the page's job: it only ever sets them as text


def test_non_finite_values_still_give_valid_json(tracking_dir: Path) -> None:
    with expertrack.init(project="p", name="nan", dir=tracking_dir, config={"x": float("nan")}, mirror="off") as run:
        run.log({"loss": float("nan")}, step=0)
        run.log({"loss": float("inf")}, step=1)
        run.summary["best"] = float("-inf")
    client = client_for(tracking_dir)
    text = client.get("/api/runs", params={"metrics": "loss"}).text
    row = json.loads(text)["runs"][0]  # strict JSON: no bare NaN
    assert row["config"]["x"] == "NaN" and row["metrics"]["loss"]["best"] is None
    detail = client.get(f"/api/runs/{row['id']}").json()
    assert detail["summary"]["best"] == "-Infinity"
    series = client.get("/api/series", params={"key": "loss", "runs": row["id"]}).json()["series"]
    values = unpack(series[row["id"]]["values"])
    assert np.isnan(values[0]) and values[1] == np.inf


@pytest.mark.parametrize(
    ("path", "params", "status", "fragment"),
    [
        ("/api/series", {"runs": "x"}, 400, "key"),
        ("/api/series", {"key": "train/loss"}, 400, "runs"),
        ("/api/series", {"key": "train/loss", "runs": "RUN", "buckets": "many"}, 400, "buckets"),
        ("/api/series", {"key": "train/loss", "runs": "RUN", "buckets": "0"}, 400, "buckets"),
        ("/api/series", {"key": "train/loss", "runs": "RUN", "buckets": "1000000"}, 400, "buckets"),
        ("/api/series", {"key": "train/loss", "runs": "RUN", "lo": "nan"}, 400, "lo"),
        ("/api/series", {"key": "train/loss", "runs": "RUN", "x": "epoch"}, 400, "x"),
        ("/api/series", {"key": "train/loss", "runs": "RUN", "after": "1,2"}, 400, "after"),
        ("/api/series", {"key": "train/loss", "runs": "RUN", "after": "1.5"}, 400, "after"),
        ("/api/series", {"key": "train/loss", "runs": "RUN,nope"}, 404, "nope"),
        ("/api/series", {"key": "k" * 1001, "runs": "RUN"}, 400, "key"),
        ("/api/runs/nope", {}, 404, "nope"),
        ("/api/runs/RUN/array", {}, 400, "key"),
        ("/api/runs/RUN/array", {"key": "moe/affinity"}, 404, "moe/affinity"),
        ("/api/runs/RUN/array", {"key": "moe/affinity", "step": "ten"}, 400, "step"),
        ("/api/runs/RUN/array_series", {"key": "nope"}, 404, "nope"),
        ("/api/runs/RUN/console", {"offset": "-1"}, 400, "offset"),
        ("/api/nothing-here", {}, 404, "Not Found"),
    ],
)
def test_bad_requests_get_clear_4xx_json(
    tracking_dir: Path, path: str, params: dict[str, str], status: int, fragment: str
) -> None:
    run_id = dense_run(tracking_dir)
    path = path.replace("RUN", run_id)
    params = {k: v.replace("RUN", run_id) for k, v in params.items()}
    response = client_for(tracking_dir).get(path, params=params)
    assert response.status_code == status
    assert fragment in error_of(response)


def test_ambiguous_reference_is_a_400_naming_the_candidates(tracking_dir: Path) -> None:
    dense_run(tracking_dir, name="twin")
    dense_run(tracking_dir, name="twin")
    response = client_for(tracking_dir).get("/api/runs/twin")
    assert response.status_code == 400 and "twin" in error_of(response)


def test_writes_are_not_allowed(tracking_dir: Path) -> None:
    run_id = dense_run(tracking_dir)
    client = client_for(tracking_dir)
    for method in ("post", "put", "delete"):
        response = getattr(client, method)(f"/api/runs/{run_id}")
        assert response.status_code == 405
        error_of(response)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2fapp.py",
        "/static/..%5capp.py",
        "/static/app.py",
        "/static/data.py",
        "/static/%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/static/....//....//etc/passwd",
        "/static/static/index.html",
        "/static/",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_path_traversal_is_refused(tracking_dir: Path, path: str) -> None:
    client = client_for(tracking_dir)
    response = client.get(path)
    assert response.status_code == 404, path
    assert b"root:" not in response.content and b"import" not in response.content


def test_page_and_its_scripts_are_served_locally(tracking_dir: Path) -> None:
    client = client_for(tracking_dir)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    scripts = ("app.js", "util.js", "table.js", "charts.js", "moe.js", "runpage.js", "alerts.js", "urlstate.js")
    for name in (*scripts, "grouped.js", "compare.js", "style.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert "https://" not in response.text, name
    plotly = client.get("/static/plotly.min.js")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith("text/javascript")
    assert len(plotly.content) > 1_000_000


def test_other_host_names_are_refused(tracking_dir: Path) -> None:
    """A page on another site that rebinds its DNS name to 127.0.0.1 must not read the runs."""
    client = TestClient(create_app(tracking_dir), base_url="http://attacker.example:8080")
    response = client.get("/api/runs")
    assert response.status_code == 400 and response.text == "Invalid host header"  # Starlette's TrustedHost
    assert TestClient(create_app(tracking_dir), base_url="http://localhost:8080").get("/api/runs").status_code == 200


def test_the_server_never_writes_the_store(tracking_dir: Path) -> None:
    dense = dense_run(tracking_dir)
    moe = moe_run(tracking_dir)
    before = {p.name: p.read_bytes() for p in tracking_dir.iterdir()}
    client = client_for(tracking_dir)
    client.get("/api/runs", params={"metrics": "train/loss"})
    client.get("/api/series", params={"key": "train/loss", "runs": f"{dense},{moe}"})
    client.get(f"/api/runs/{moe}/array", params={"key": "moe/affinity"})
    client.get(f"/api/runs/{dense}/console")
    after = {p.name: p.read_bytes() for p in tracking_dir.iterdir()}
    assert after["store.db"] == before["store.db"]
    # A WAL reader may create SQLite's -wal/-shm bookkeeping files, but never puts a page in the log.
    assert after.get("store.db-wal", b"") == b""


def test_a_crashed_run_row_carries_its_last_sign_of_life(tracking_dir: Path) -> None:
    from tests.conftest import run_python

    code = "import os, expertrack\nrun = expertrack.init(project='p')\nrun.log({'x': 1.0})\nrun.flush()\nos._exit(0)"
    run_python(code, env={"EXPERTRACK_DIR": str(tracking_dir)})
    (row,) = client_for(tracking_dir).get("/api/runs").json()["runs"]
    assert row["state"] == "crashed" and row["ended_at"] is None
    assert row["heartbeat_at"] >= row["created_at"]  # the page shows a duration up to it, not "-"
