// One run's page: identity and state, config, summary, environment, and the console of a wrapped run
// (tailed live from a byte offset while the run is running).

import { el, getJSON, fmtValue, fmtDuration, fmtDate, runDuration, stateBadge, HttpError } from "./util.js";
import { hasMoe } from "./moe.js";

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
      run.notes ? el("p", { class: "notes", text: run.notes }) : null,
      el("div", { class: "toolbar" }, filter),
      el("div", { class: "run-grid" },
        el("div", { class: "card" }, el("h3", { text: "Config" }), kvTable(run.config, "run-config")),
        el("div", { class: "card" }, el("h3", { text: "Summary" }), kvTable(run.summary, "run-summary")),
        el("div", { class: "card" }, el("h3", { text: "Environment" }), kvTable(run.environment, "run-environment"))),
      el("div", { class: "card console-card" },
        el("div", { class: "chart-head" }, el("h3", { text: "Console" }),
          el("label", { class: "label" }, this.followBox, " follow")),
        this.consoleNote, this.consolePre));
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
    if (run.state === "running" || this.detail.state === "running") this.tailConsole();
    this.detail.state = run.state;
  }
}
