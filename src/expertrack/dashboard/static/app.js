// The page: shared state, the half-second poll of /api/runs, and hash routing between the three views
// (#/ runs and charts, #/moe[/RUN] the MoE view, #/run/RUN a run's page). The runs view's selection, grouping,
// x axis and smoothing live in its URL (#/?runs=...: see urlstate.js), so a view can be shared.

import { PALETTE, loadPlotly } from "./util.js";
import { RunsTable, defaultColumns } from "./table.js";
import { Charts } from "./charts.js";
import { MoeView, resolveRun } from "./moe.js";
import { splitHash, readQuery, runsHash } from "./urlstate.js";
import { RunPage } from "./runpage.js";

// The writer flushes at least once a second; polling twice a second puts a log() on screen within ~1.6 s.
const POLL_MS = 500;
const VIEW_KEY = "expertrack.view";

function loadView() {
  try {
    return JSON.parse(localStorage.getItem(VIEW_KEY) || "{}");
  } catch {
    return {};
  }
}

class App {
  constructor() {
    const saved = loadView();
    this.state = {
      runs: [],
      byId: new Map(),
      selected: new Set(saved.selected || []),
      metricCols: saved.metricCols || null,
      configCols: saved.configCols || null,
      sort: saved.sort || { id: "created", dir: -1 },
      filter: "",
      chart: { x: "step", smoothing: 0, logY: false, keyFilter: "", groupBy: "", band: "std", ...(saved.chart || {}) },
      compare: Boolean(saved.compare),
      pendingRefs: null, // runs a shared URL names, resolved once the runs list arrives
    };
    this.loaded = false;
    this.applyQuery(splitHash(location.hash));
    this.colors = new Map();
    this.etag = null;
    this.views = {
      runs: document.getElementById("view-runs"),
      moe: document.getElementById("view-moe"),
      run: document.getElementById("view-run"),
    };
    this.table = new RunsTable(document.getElementById("runs-panel"), this);
    this.charts = new Charts(document.getElementById("charts-panel"), this);
    this.moe = new MoeView(this.views.moe, this);
    this.runPage = new RunPage(this.views.run, this);
    this.liveDot = document.getElementById("live-dot");
    this.liveText = document.getElementById("live-text");
    window.addEventListener("hashchange", () => this.route());
    this.route();
    this.poll();
  }

  saveView() {
    const { selected, metricCols, configCols, sort, chart, compare } = this.state;
    localStorage.setItem(VIEW_KEY, JSON.stringify({ selected: [...selected], metricCols, configCols, sort, chart, compare }));
    // replaceState: the address bar follows the view without a history entry per slider move (no hashchange)
    if (this.view === "runs" && location.hash !== runsHash(this.state)) history.replaceState(null, "", runsHash(this.state));
  }

  // A runs-view URL's query onto the state; true when it changed something.
  applyQuery({ path, query }) {
    if (path[0] !== "" || ![...query.keys()].length) return false;
    const { refs, chart, compare } = readQuery(query);
    const before = JSON.stringify([[...this.state.selected], this.state.chart, this.state.compare]);
    Object.assign(this.state.chart, chart);
    if (compare !== undefined) this.state.compare = compare;
    if (refs) {
      this.state.selected = new Set(refs);
      this.state.pendingRefs = refs;
    }
    return before !== JSON.stringify([[...this.state.selected], this.state.chart, this.state.compare]);
  }

  colorOf(id) {
    if (!this.colors.has(id)) this.colors.set(id, PALETTE[this.colors.size % PALETTE.length]);
    return this.colors.get(id);
  }

  toggleSelected(id, on) {
    const selected = new Set(this.state.selected);
    if (on) selected.add(id);
    else selected.delete(id);
    this.setSelection([...selected]);
  }

  setSelection(ids) {
    this.state.selected = new Set(ids);
    this.saveView();
    this.table.render();
    this.charts.sync();
  }

  columnsChanged() {
    this.saveView();
    this.etag = null;
    this.table.render();
    this.poll(true);
  }

  route() {
    const parts = splitHash(location.hash);
    const [view, ...rest] = parts.path;
    if (this.applyQuery(parts)) {
      if (this.loaded) this.resolveRefs();
      this.charts.renderControls();
      this.table.render();
    }
    const name = view === "moe" ? "moe" : view === "run" && rest.length ? "run" : "runs";
    for (const [key, node] of Object.entries(this.views)) node.hidden = key !== name;
    document.querySelectorAll(".tabs a").forEach((a) => a.classList.toggle("active", a.dataset.tab === name));
    this.view = name;
    const arg = rest.length ? decodeURIComponent(rest.join("/")) : null;
    if (name === "run") this.runPage.open(arg);
    if (name === "moe") this.moe.sync(arg);
    if (name === "runs") {
      this.charts.sync();
      this.saveView();
    }
  }

  // Runs a URL named (ids, names or id prefixes) as the ids of the listed runs.
  resolveRefs() {
    const refs = this.state.pendingRefs;
    if (!refs) return;
    this.state.pendingRefs = null;
    const ids = refs.map((ref) => resolveRun(this.state.runs, ref)?.id).filter(Boolean);
    this.state.selected = new Set(ids);
  }

  async poll(once = false) {
    try {
      const params = new URLSearchParams();
      if (this.state.metricCols?.length) params.set("metrics", this.state.metricCols.join(","));
      // "no-cache": the browser revalidates with the ETag; an unchanged table comes back from its cache as a
      // 304 under the hood, and the same ETag tells us to skip the parse and the re-render.
      const response = await fetch(`/api/runs?${params}`, { cache: "no-cache" });
      if (response.status === 401) {
        // served with a token (docs/team.md) and this browser has none yet: say how to present it
        const body = await response.json().catch(() => ({}));
        this.setLocked(body.error || "this dashboard needs its token: open it once as /?token=YOUR_TOKEN");
        if (!once) setTimeout(() => this.poll(), POLL_MS);
        return;
      }
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      const text = await response.text();
      const etag = response.headers.get("etag");
      if (etag !== this.etag || etag === null) {
        this.etag = etag;
        this.receive(JSON.parse(text));
      }
      this.setLive(true);
      this.tickViews();
      loadPlotly();
    } catch (error) {
      this.setLive(false, error.message);
    }
    if (!once) setTimeout(() => this.poll(), POLL_MS);
  }

  receive(body) {
    const { state } = this;
    state.runs = body.runs;
    state.byId = new Map(body.runs.map((r) => [r.id, r]));
    document.getElementById("store-dir").textContent = body.dir;
    document.getElementById("store-dir").title = body.dir;
    const first = !this.loaded;
    this.loaded = true;
    if (first) this.resolveRefs();
    const known = [...state.selected].filter((id) => state.byId.has(id));
    if (known.length !== state.selected.size) state.selected = new Set(known);
    if (state.metricCols === null && body.runs.length) {
      Object.assign(state, defaultColumns(body.runs));
      this.etag = null;
      setTimeout(() => this.poll(true), 0);
    }
    this.table.render();
    if (this.view === "runs") this.charts.sync();
    if (first && this.view === "runs") this.saveView();
  }

  tickViews() {
    if (this.view === "runs") {
      this.table.render(); // durations of running runs
      this.charts.tick();
    } else if (this.view === "moe") this.moe.sync();
    else if (this.view === "run") this.runPage.tick();
  }

  setLocked(message) {
    this.liveDot.className = "down";
    this.liveText.textContent = message;
  }

  setLive(ok, message = "") {
    const running = this.state.runs.filter((r) => r.state === "running").length;
    this.liveDot.className = ok ? (running ? "live" : "idle") : "down";
    this.liveText.textContent = ok
      ? running ? `live · ${running} running` : "live · no run running"
      : `server unreachable (${message}); retrying`;
  }
}

window.expertrack = new App();
window.expertrackReady = true;
