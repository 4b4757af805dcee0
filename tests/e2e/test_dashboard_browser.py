"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), served by `expertrack ui` in a
child process over a store written with the logging API. Screenshots go to the test's temp dir and to
tests/artifacts/dashboard/ (gitignored) for a human look."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import REPO
from tests.dashboard.builders import (
    DOMAINS,
    XSS_NAME,
    affinity_at,
    dense_run,
    moe_run,
    utilization_at,
    xss_run,
)
from tests.dashboard.processes import Server
from tests.pg import PASSWORD

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "tests" / "artifacts" / "dashboard"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def serve(tracking_dir: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(token: str | None = None) -> Server:
        servers.append(Server(tracking_dir, token=token))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


class Watched:
    """A page with every dialog, page error and failed request recorded."""

    def __init__(self, page: Page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} ({r.failure})"))

    def open(self, url: str) -> Page:
        self.page.goto(url)
        self.page.wait_for_function("window.expertrackReady === true && typeof Plotly !== 'undefined'")
        return self.page

    def screenshot(self, name: str) -> None:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)


@pytest.fixture
def watched(browser: Browser, tmp_path: Path) -> Iterator[Watched]:
    # CSP off in the tests: Playwright's waits need eval, and the escaping must hold without CSP's backstop.
    context = browser.new_context(viewport={"width": 1440, "height": 960}, bypass_csp=True)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    yield Watched(context.new_page(), shots)
    context.close()


def row(page: Page, name: str) -> Any:
    return page.locator("#runs-table tbody tr", has=page.locator("a.run-link", has_text=name))


def traces(page: Page, key: str) -> list[dict[str, Any]]:
    """The plotted traces of the chart for ``key``: name and x/y as plain lists."""
    return page.evaluate(
        """key => {
            const card = [...document.querySelectorAll('.chart')].find(c => c.dataset.key === key);
            const plot = card && card.querySelector('.plot');
            return plot && plot.data ? plot.data.map(t => ({name: t.name, meta: t.meta || null,
                x: Array.from(t.x), y: Array.from(t.y)})) : [];
        }""",
        key,
    )


def test_runs_table_lists_runs(tracking_dir: Path, serve: Any, watched: Watched) -> None:
    dense_run(tracking_dir, name="dense-a")
    dense_run(tracking_dir, name="dense-b", lr=1e-3)
    moe_run(tracking_dir, name="moe-a")
    page = watched.open(serve().url)
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 3")
    names = page.locator("#runs-table tbody a.run-link").all_text_contents()
    assert sorted(names) == ["dense-a", "dense-b", "moe-a"]
    assert row(page, "moe-a").locator(".badge").text_content() == "finished"
    assert "59" in row(page, "dense-a").text_content()  # the Steps column
    page.fill("#runs-filter", "tag:moe")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 1")
    page.fill("#runs-filter", "")
    watched.screenshot("runs-table")
    assert watched.errors == [] and watched.dialogs == []


def test_a_dashboard_with_a_token_works_once_the_browser_presented_it(
    tracking_dir: Path, serve: Any, watched: Watched
) -> None:
    """A team's dashboard (docs/team.md): locked without the token, saying how; opened once with ?token=, it
    works from a cookie script cannot read, and the token leaves the address bar."""
    dense_run(tracking_dir, name="dense-a")
    token = "browser-token-7d41c0a9e2"
    server = serve(token=token)
    page = watched.page
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('live-text').textContent.includes('needs its token')")
    assert page.locator("#runs-table tbody tr").count() == 0
    watched.screenshot("token-locked")
    page = watched.open(f"{server.url}/?token={token}#/")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 1")
    assert page.url == f"{server.url}/#/"  # redirected without the token, the view's #fragment kept
    assert token not in page.evaluate("document.cookie")  # HttpOnly: no script sees it
    assert token not in page.content()
    row(page, "dense-a").locator("input.select-run").check()
    page.wait_for_function(
        """() => { const c = [...document.querySelectorAll('.chart')].find(c => c.dataset.key === 'train/loss');
                   const d = c && c.querySelector('.plot').data; return d && d.length === 1; }"""
    )
    watched.screenshot("token")
    assert watched.errors == [] and watched.dialogs == []


def test_selecting_two_runs_overlays_them_on_one_chart(tracking_dir: Path, serve: Any, watched: Watched) -> None:
    a = dense_run(tracking_dir, name="dense-a")
    b = dense_run(tracking_dir, name="dense-b", lr=1e-3)
    moe_run(tracking_dir, name="moe-a")
    page = watched.open(serve().url)
    for name in ("dense-a", "dense-b"):
        row(page, name).locator("input.select-run").check()
    page.wait_for_function(
        """() => { const c = [...document.querySelectorAll('.chart')].find(c => c.dataset.key === 'train/loss');
                   const d = c && c.querySelector('.plot').data; return d && d.length === 2; }"""
    )
    plotted = traces(page, "train/loss")
    assert sorted(t["name"] for t in plotted) == ["dense-a", "dense-b"]
    assert {t["meta"] for t in plotted} == {a, b}
    by_name = {t["name"]: t for t in plotted}
    assert by_name["dense-a"]["x"] == list(range(60))
    assert by_name["dense-b"]["y"][-1] == pytest.approx(4.0 / 60 + 1e-3)
    # grouped by namespace: train/ and val/ sections, no moe/ section (moe-a is not selected)
    namespaces = page.locator("details.namespace").evaluate_all("ds => ds.map(d => d.dataset.namespace)")
    assert namespaces == ["train", "val"]
    watched.screenshot("two-runs-overlaid")
    assert watched.errors == [] and watched.dialogs == []


def test_the_dashboard_of_a_shared_postgresql_store_overlays_runs_pushed_to_it(
    tracking_dir: Path, postgres_url: str, watched: Watched
) -> None:
    """A team's dashboard (docs/team.md) reads a PostgreSQL store: runs written locally, pushed with `expertrack
    push`, charted from the server as from a directory, the same points."""
    a = dense_run(tracking_dir, name="dense-a")
    b = dense_run(tracking_dir, name="dense-b", lr=1e-3)
    exe = Path(sys.executable).with_name("expertrack")
    pushed = subprocess.run([str(exe), "push", "--to", postgres_url], capture_output=True, text=True, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    server = Server(postgres_url)  # type: ignore[arg-type]  # a location: the URL given to `ui --dir`
    try:
        page = watched.open(server.url)
        page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length === 2")
        for name in ("dense-a", "dense-b"):
            row(page, name).locator("input.select-run").check()
        page.wait_for_function(
            """() => { const c = [...document.querySelectorAll('.chart')].find(c => c.dataset.key === 'train/loss');
                       const d = c && c.querySelector('.plot').data; return d && d.length === 2; }"""
        )
        by_name = {t["name"]: t for t in traces(page, "train/loss")}
        assert {t["meta"] for t in by_name.values()} == {a, b}
        assert by_name["dense-a"]["x"] == list(range(60))
        assert by_name["dense-b"]["y"][-1] == pytest.approx(4.0 / 60 + 1e-3)
        assert PASSWORD not in page.content()  # the URL's password is never shown
        watched.screenshot("postgresql-two-runs")
        assert watched.errors == [] and watched.dialogs == []
    finally:
        server.stop()


LIVE_CHILD = """
import os, sys, time, expertrack
directory, stop = sys.argv[1], sys.argv[2]
run = expertrack.init(project="live", name="live-run", dir=directory, mirror="off")
step = 0
while not os.path.exists(stop) and step < 2000:
    run.log({"train/loss": 1.0 / (step + 1)}, step=step)
    print(step, time.time(), flush=True)
    step += 1
    time.sleep(0.1)
run.finish()
"""


def test_a_run_logging_in_another_process_updates_without_reload(
    tracking_dir: Path, serve: Any, watched: Watched, tmp_path: Path
) -> None:
    dense_run(tracking_dir, name="dense-a")
    stop = tmp_path / "stop"
    child = subprocess.Popen(
        [sys.executable, "-c", LIVE_CHILD, str(tracking_dir), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    logged: dict[int, float] = {}

    def read_child() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            step, at = line.split()
            logged[int(step)] = float(at)

    reader = threading.Thread(target=read_child, daemon=True)
    reader.start()
    try:
        page = watched.open(serve().url)
        row(page, "live-run").wait_for(timeout=15_000)
        assert row(page, "live-run").locator(".badge").text_content() == "running"
        row(page, "live-run").locator("input.select-run").check()
        page.evaluate("window.__sameDocument = true")
        latencies = []
        last_seen = -1
        deadline = time.monotonic() + 20
        while len(latencies) < 12 and time.monotonic() < deadline:
            plotted = traces(page, "train/loss")
            if plotted and plotted[0]["x"]:
                shown = int(plotted[0]["x"][-1])
                if shown > last_seen:
                    if last_seen >= 0 and shown in logged:
                        latencies.append(time.time() - logged[shown])
                    last_seen = shown
            time.sleep(0.05)
        assert len(latencies) >= 5, f"the chart stopped following the run at step {last_seen}"
        assert page.evaluate("window.__sameDocument") is True  # no reload happened
        plotted = traces(page, "train/loss")[0]
        assert plotted["x"] == sorted(set(plotted["x"])) and plotted["x"][0] == 0  # appended in order, no gaps
        watched.screenshot("live-run")
        stop.touch()
        child.wait(timeout=30)
        row(page, "live-run").locator(".badge", has_text="finished").wait_for(timeout=10_000)
        (ARTIFACTS / "live-latency.txt").write_text(
            f"seconds from log() to on screen over {len(latencies)} updates: median "
            f"{statistics.median(latencies):.2f}, max {max(latencies):.2f}\n"
        )
        print(f"live latency: median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s")
    finally:
        stop.touch()
        if child.poll() is None:
            child.kill()
        child.wait()
    assert watched.errors == [] and watched.dialogs == []


def test_markup_in_user_strings_is_shown_as_text_and_never_runs(
    tracking_dir: Path, serve: Any, watched: Watched
) -> None:
    run_id = xss_run(tracking_dir)
    server = serve()
    page = watched.open(server.url)
    page.wait_for_selector("#runs-table tbody tr")
    assert page.locator("#runs-table tbody a.run-link").text_content() == XSS_NAME
    assert page.locator("#runs-table tbody .chip").text_content() == "<svg onload=alert(2)>"
    assert "<b>group</b>" in page.locator("#runs-table tbody tr").text_content()
    row(page, XSS_NAME).locator("input.select-run").check()
    page.wait_for_function("[...document.querySelectorAll('.chart .plot')].some(p => p.data && p.data.length)")
    page.wait_for_timeout(500)
    assert "<u>odd</u>/key" in page.locator(".chart-title").all_text_contents()
    assert "<u>odd</u>" in page.locator(".ns-name").all_text_contents()
    watched.screenshot("markup-as-text-runs")
    page.goto(f"{server.url}/#/run/{run_id}")
    page.wait_for_function("document.querySelector('#console') && document.querySelector('#console').textContent")
    assert page.locator("#run-title").text_content() == XSS_NAME
    assert page.locator(".notes").text_content() == "<script>alert(3)</script>"
    assert "<i>key</i>" in page.locator("#run-config").text_content()
    assert "<img src=y onerror=alert(4)>" in page.locator("#run-config").text_content()
    assert "<script>alert(5)</script>" in page.locator("#console").text_content()
    page.wait_for_timeout(1000)
    watched.screenshot("markup-as-text-run-page")
    injected = page.evaluate("""() => document.querySelectorAll(
        'img[src="x"], img[src="y"], svg[onload], main u, main b, main i, main script').length""")
    assert injected == 0
    assert watched.dialogs == [] and watched.errors == []


def test_heatmap_shows_the_known_values(tracking_dir: Path, serve: Any, watched: Watched) -> None:
    run_id = moe_run(tracking_dir, name="moe-a")
    dense_run(tracking_dir, name="dense-a")
    page = watched.open(f"{serve().url}/#/moe/{run_id}")
    heatmap = "document.getElementById('moe-heatmap')"
    page.wait_for_function(f"{heatmap}.data && {heatmap}.data.length === 1")
    assert page.locator("#moe-step-label").text_content() == "step 20"  # follows the latest step
    z = page.evaluate(f"{heatmap}.data[0].z")
    assert np.array_equal(z, affinity_at(20).sum(axis=0))  # all layers, summed
    page.select_option("#moe-layer", "1")
    page.evaluate("""() => { const s = document.getElementById('moe-step');
                             s.value = '1'; s.dispatchEvent(new Event('input')); }""")
    page.wait_for_function("document.getElementById('moe-step-label').textContent === 'step 10'")
    page.wait_for_function(f"{heatmap}.data[0].z[0][0] === {affinity_at(10)[1][0][0]}")
    trace = page.evaluate(f"({{z: {heatmap}.data[0].z, x: {heatmap}.data[0].x, y: {heatmap}.data[0].y}})")
    assert np.array_equal(trace["z"], affinity_at(10)[1])
    assert trace["x"] == DOMAINS and trace["y"] == ["expert 0", "expert 1", "expert 2", "expert 3"]
    cells = page.locator("#moe-values tr").nth(1).locator("td").all_text_contents()
    assert cells == [str(int(v)) for v in affinity_at(10)[1][0]]
    util = page.evaluate("document.getElementById('moe-util').data[0].z")
    assert np.allclose(util, utilization_at(10))
    page.select_option("#moe-norm", "domain")
    shares = page.evaluate(f"{heatmap}.data[0].z")
    expected = affinity_at(10)[1] / affinity_at(10)[1].sum(axis=0, keepdims=True)
    assert np.allclose(shares, expected)
    page.select_option("#moe-norm", "counts")
    page.wait_for_function("document.getElementById('moe-entropy').data")
    names = page.evaluate("document.getElementById('moe-entropy').data.map(t => t.name)")
    assert "router entropy (mean over layers)" in names and "router entropy · layer 1" in names
    watched.screenshot("moe-heatmap")
    assert watched.errors == [] and watched.dialogs == []
