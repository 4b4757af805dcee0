// One run's page: identity and state, config, summary, environment, and the console of a wrapped run
// (tailed live from a byte offset while the run is running).

import { el, getJSON, unpack, fmtValue, fmtNumber, fmtDuration, fmtDate, runDuration, stateBadge, HttpError, loadPlotly, plotlyText } from "./util.js";
import { hasMoe } from "./moe.js";
import { fetchAlerts } from "./alerts.js";

// System metrics (GPU memory, utilisation, ...) are logged under this namespace; the run page charts them.
const SYSTEM_PREFIX = "system/";
const ALERTS_REFRESH_MS = 5000;

const MAX_CONSOLE_CHARS = 2_000_000;
// CSI and OSC escape sequences (colours, cursor moves, titles): shown as text they would be noise.
const ANSI = /\x1b\[[0-9;?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

export function cleanConsole(text) {
  return text.replace(ANSI, "").replace(/\r\n/g, "\n").split("\n")
    .map((line) => (line.includes("\r") ? line.slice(line.lastIndexOf("\r", line.length - 2) + 1) : line))
    .join("\n");
}

function flattenObject(value, prefix = "", out = {}) {
  if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    for (const [k, v] of Object.entries(value)) flattenObject(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = value;
  }
  return out;
}

function kvTable(object, id) {
  const rows = Object.entries(flattenObject(object)).sort(([a], [b]) => a.localeCompare(b));
  if (!rows.length) return el("div", { class: "muted", text: "(empty)" });
  return el("table", { class: "kv", id },
    ...rows.map(([k, v]) => el("tr", { dataset: { key: k.toLowerCase() } }, el("th", { text: k }), el("td", { class: "mono", text: fmtValue(v) }))));
}

export class RunPage {
  constructor(root, app) {
    this.app = app;
    this.root = root;
    this.runId = null;
    this.consoleOffset = null;
    this.consoleBusy = false;
  }

  async open(id) {
    this.runId = id;
    this.consoleOffset = null;
    this.root.replaceChildren(el("div", { class: "muted", text: "Loading…" }));
    let run;
    try {
      run = await getJSON(`/api/runs/${encodeURIComponent(id)}`);
    } catch (error) {
      const text = error instanceof HttpError && error.status === 404 ? `No run ${id} in this store.` : `⚠ ${error.message}`;
      this.root.replaceChildren(el("div", { class: "empty", text }));
      return;
    }
    if (this.runId !== id) return;
    this.render(run);
    await this.tailConsole();
  }

  render(run) {
    this.detail = run;
    this.stateCell = el("span", {}, stateBadge(run.state));
    this.durationCell = el("span", { text: fmtDuration(runDuration(run)) });
    const filter = el("input", { type: "search", id: "kv-filter", placeholder: "Filter keys",
      oninput: () => {
        const q = filter.value.toLowerCase();
        this.root.querySelectorAll("table.kv tr").forEach((tr) => { tr.hidden = q && !tr.dataset.key.includes(q); });
      } });
    this.consolePre = el("pre", { class: "console", id: "console" });
    this.consoleNote = el("div", { class: "muted" });
    this.followBox = el("input", { type: "checkbox", checked: true });
    this.alertsCard = el("div", { class: "card alerts-card", id: "alerts-card", hidden: true });
    this.systemPlot = el("div", { class: "plot", id: "run-system" });
    this.systemCard = el("div", { class: "card", hidden: true }, el("h3", { text: "System" }), this.systemPlot);
    this.ranksCard = this.ranksView(run);
    const facts = [
      ["id", el("span", { class: "mono", text: run.id })],
      ["state", this.stateCell],
      ["project", run.project], ["group", run.group],
      ["tags", el("span", {}, ...(run.tags || []).map((t) => el("span", { class: "chip", text: t })))],
      ["created", fmtDate(run.created_at)], ["duration", this.durationCell],
      ["steps", run.last_step === null ? "" : String(run.last_step)],
      ["dropped points", run.dropped_points ? `${run.dropped_points.toLocaleString()} (the store did not keep up)` : ""],
      ["exit", run.exit_code === null || run.exit_code === undefined ? "" : `code ${run.exit_code}${run.exit_signal ? `, signal ${run.exit_signal}` : ""}`],
    ].filter(([, v]) => v !== null && v !== undefined && v !== "");
    this.root.replaceChildren(
      el("div", { class: "run-head" },
        el("a", { href: "#/", class: "back", text: "← Runs" }),
        el("h1", { id: "run-title", text: run.name || run.id }),
        el("div", { class: "run-actions" },
          el("button", { class: "btn primary", text: "Chart this run", onclick: () => { this.app.toggleSelected(run.id, true); location.hash = "#/"; } }),
          hasMoe(run) ? el("a", { class: "btn", href: `#/moe/${encodeURIComponent(run.id)}`, text: "MoE view" }) : null)),
      el("dl", { class: "facts" }, ...facts.map(([k, v]) => el("div", {}, el("dt", { text: k }), el("dd", {}, v)))),
      // replaceChildren would write a null as the text "null": only present parts are passed
      ...[run.notes ? el("p", { class: "notes", text: run.notes }) : null].filter(Boolean),
      this.alertsCard,
      el("div", { class: "toolbar" }, filter),
      el("div", { class: "run-grid" },
        el("div", { class: "card" }, el("h3", { text: "Config" }), kvTable(run.config, "run-config")),
        el("div", { class: "card" }, el("h3", { text: "Summary" }), kvTable(run.summary, "run-summary")),
        this.environmentCard(run)),
      ...[this.ranksCard].filter(Boolean),
      this.systemCard,
      el("div", { class: "card console-card" },
        el("div", { class: "chart-head" }, el("h3", { text: "Console" }),
          el("label", { class: "label" }, this.followBox, " follow")),
        this.consoleNote, this.consolePre));
    this.drawAlerts(run);
    this.drawSystem(run);
  }

  // Environment variables stay hidden unless asked for, as `expertrack show` hides them without --env.
  environmentCard(run) {
    const card = el("div", { class: "card", id: "environment-card" });
    const fill = (environment, shown) => {
      const count = run.env_count || 0;
      const toggle = count ? el("button", {
        class: "btn small", id: "env-toggle",
        text: shown ? "Hide environment variables" : `Show ${count} environment variables`,
        onclick: async () => {
          if (shown) return fill(run.environment, false);
          const full = await getJSON(`/api/runs/${encodeURIComponent(run.id)}?env=1`);
          if (full && this.runId === run.id) fill(full.environment, true);
        },
      }) : null;
      card.replaceChildren(el("div", { class: "chart-head" }, el("h3", { text: "Environment" }), toggle),
        kvTable(environment, "run-environment"));
    };
    fill(run.environment, false);
    return card;
  }

  async drawAlerts(run) {
    this.alertsAt = Date.now();
    let alerts;
    try {
      alerts = await fetchAlerts(run.id);
    } catch {
      return;
    }
    if (this.runId !== run.id || !alerts.length) return;
    const head = el("tr", {}, ...["step", "rule", "key", "value", "message"].map((h) => el("th", { text: h })));
    const rows = alerts.map((a) => el("tr", {},
      el("td", { class: "num", text: a.step === null || a.step === undefined ? "" : String(a.step) }),
      el("td", { text: a.rule ?? "" }), el("td", { class: "mono", text: a.key ?? "" }),
      el("td", { class: "num", text: fmtNumber(a.value) }), el("td", { text: a.message ?? "" })));
    this.alertsCard.replaceChildren(el("h3", { text: `Alerts (${alerts.length})` }),
      el("table", { class: "kv alerts", id: "run-alerts" }, head, ...rows));
    this.alertsCard.hidden = false;
  }

  // A run every rank wrote (init(ranks="all")): each rank's state, and one key's series per rank, the ranks
  // chosen in a select (all of them, or one). Other runs have rank 0 only and get no card.
  ranksView(run) {
    const ranks = run.ranks || [];
    if (ranks.length < 2) return null;
    const states = run.rank_states || {};
    const head = el("tr", {}, ...["rank", "state", "node", "pid", "exit"].map((h) => el("th", { text: h })));
    const rows = ranks.map((r) => {
      const s = states[String(r)] || {};
      return el("tr", {}, el("td", { class: "num", text: String(r) }), el("td", {}, s.state ? stateBadge(s.state) : ""),
        el("td", { text: s.node ?? "" }), el("td", { class: "num", text: s.pid ? String(s.pid) : "" }),
        el("td", { class: "num", text: s.exit_code === null || s.exit_code === undefined ? "" : String(s.exit_code) }));
    });
    const keys = (run.metric_keys || []).filter((k) => !k.startsWith(SYSTEM_PREFIX));
    const keySelect = el("select", { id: "rank-key" }, ...keys.map((k) => el("option", { value: k, text: k })));
    const rankSelect = el("select", { id: "rank-select" }, el("option", { value: "all", text: "all ranks" }),
      ...ranks.map((r) => el("option", { value: String(r), text: `rank ${r}` })));
    const plot = el("div", { class: "plot", id: "rank-plot" });
    const draw = () => this.drawRanks(run, keySelect.value, rankSelect.value === "all" ? ranks : [Number(rankSelect.value)], plot);
    keySelect.onchange = draw;
    rankSelect.onchange = draw;
    if (keys.length) draw();
    return el("div", { class: "card", id: "ranks-card" },
      el("div", { class: "chart-head" }, el("h3", { text: `Ranks (${ranks.length})` }), keySelect, rankSelect),
      el("table", { class: "kv alerts", id: "run-ranks" }, head, ...rows), plot);
  }

  async drawRanks(run, key, ranks, plot) {
    const traces = [];
    for (const rank of ranks) {
      const params = new URLSearchParams({ key, runs: run.id, buckets: 500, rank });
      const body = await getJSON(`/api/series?${params}`);
      const s = body.series[run.id];
      if (s) traces.push({ type: "scatter", mode: "lines", x: unpack(s.steps), y: unpack(s.values), name: `rank ${rank}` });
    }
    await loadPlotly();
    if (this.runId !== run.id) return;
    Plotly.react(plot, traces, {
      height: 260, margin: { l: 52, r: 12, t: 8, b: 36 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      legend: { orientation: "h", y: -0.22, x: 0 }, font: { family: "Inter, system-ui, sans-serif", size: 11, color: "#3b4351" },
    }, { displaylogo: false, responsive: true });
  }

  // One chart of every system/ key the run logged, when it logged any.
  async drawSystem(run) {
    const keys = (run.metric_keys || []).filter((k) => k.startsWith(SYSTEM_PREFIX));
    this.systemCard.hidden = !keys.length;
    if (!keys.length) return;
    const traces = [];
    for (const key of keys) {
      const params = new URLSearchParams({ key, runs: run.id, buckets: 500 });
      const body = await getJSON(`/api/series?${params}`);
      const s = body.series[run.id];
      if (s) traces.push({ type: "scatter", mode: "lines", x: unpack(s.steps), y: unpack(s.values), name: plotlyText(key.slice(SYSTEM_PREFIX.length)) });
    }
    await loadPlotly();
    if (this.runId !== run.id) return;
    Plotly.react(this.systemPlot, traces, {
      height: 260, margin: { l: 52, r: 12, t: 8, b: 36 }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      legend: { orientation: "h", y: -0.22, x: 0 }, font: { family: "Inter, system-ui, sans-serif", size: 11, color: "#3b4351" },
    }, { displaylogo: false, responsive: true });
  }

  // Append what the console gained since the last look (the whole tail on first call).
  async tailConsole() {
    if (this.consoleBusy || !this.detail) return;
    this.consoleBusy = true;
    const id = this.runId;
    try {
      const params = this.consoleOffset === null ? "" : `?offset=${this.consoleOffset}`;
      const body = await getJSON(`/api/runs/${encodeURIComponent(id)}/console${params}`);
      if (this.runId !== id) return;
      if (!body.present) {
        this.consoleNote.textContent = "No console output: only runs wrapped with `expertrack run -- CMD` (or given one) have it.";
        return;
      }
      this.consoleNote.textContent = body.truncated ? `Showing the last ${Math.round((body.next_offset - body.offset) / 1024)} KiB.` : "";
      if (body.text) {
        const pre = this.consolePre;
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        let text = pre.textContent + cleanConsole(body.text);
        if (text.length > MAX_CONSOLE_CHARS) text = text.slice(text.length - MAX_CONSOLE_CHARS);
        pre.textContent = text;
        if (this.followBox.checked && (atBottom || this.consoleOffset === null)) pre.scrollTop = pre.scrollHeight;
      }
      this.consoleOffset = body.next_offset;
    } catch (error) {
      this.consoleNote.textContent = `⚠ ${error.message}`;
    } finally {
      this.consoleBusy = false;
    }
  }

  // Every poll: refresh state and duration, and tail the console while the run lives.
  tick() {
    const run = this.app.state.byId.get(this.runId);
    if (!run || !this.detail) return;
    this.stateCell.replaceChildren(stateBadge(run.state));
    this.durationCell.textContent = fmtDuration(runDuration(run));
    if (run.state === "running" || this.detail.state === "running") {
      this.tailConsole();
      // a live run's new alerts appear without a reload; asked at most every ALERTS_REFRESH_MS
      if (Date.now() - (this.alertsAt || 0) >= ALERTS_REFRESH_MS) this.drawAlerts(run);
    }
    this.detail.state = run.state;
  }
}
