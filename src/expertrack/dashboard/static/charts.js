// Charts: one per scalar key, grouped by namespace, the compared runs overlaid.
//
// Data flow per chart: a full fetch (server-side min/max buckets, ~1 per pixel) when a run joins the chart or
// the zoom changes; then, while a run logs, only the points after the last step the chart holds
// (`after=`), appended in place. Charts off screen fetch nothing until scrolled into view.

import { el, getJSON, unpack, concat, plotlyText, debounce, fmtNumber, loadPlotly } from "./util.js";
import { Alerts, alertMarkers } from "./alerts.js";
import { BAND_LABELS, fetchGroups, groupTraces, groupChoices } from "./grouped.js";
import { ComparePanel } from "./compare.js";

const CHART_HEIGHT = 260;
// A chart refetches a run from scratch once appended points outgrow its first fetch this many times.
const REFETCH_GROWTH = 3;
// A grouped chart of running runs is recomputed at most this often (it re-reads every run of every group).
const GROUP_REFRESH_MS = 2000;

export function namespaceOf(key) {
  const slash = key.lastIndexOf("/");
  return slash > 0 ? key.slice(0, slash) : "";
}

// TensorBoard's debiased exponential moving average; non-finite points pass through unsmoothed.
export function smooth(values, weight) {
  if (!weight) return values;
  const out = new Float64Array(values.length);
  let last = 0;
  let count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    count += 1;
    out[i] = last / (1 - Math.pow(weight, count));
  }
  return out;
}

function bucketsFor(div, runCount) {
  const width = Math.max(200, div.clientWidth || 500);
  // ~1 bucket per pixel (each keeps up to 4 points), fewer per run when many runs share the chart.
  const perRun = runCount > 10 ? width / 2 : width;
  return Math.round(Math.min(1000, Math.max(100, perRun)));
}

class Chart {
  constructor(key, charts) {
    this.key = key;
    this.charts = charts;
    this.series = new Map(); // runId -> {steps, times, values, lastStep, base, seenRunStep}
    this.zoom = null; // [lo, hi] on the server's axis ("step" or "time"), or null for everything
    this.visible = false;
    this.busy = false;
    this.dirty = true;
    this.plotted = false;
    this.title = el("div", { class: "chart-title", text: key, title: key });
    this.info = el("div", { class: "chart-info" });
    this.plot = el("div", { class: "plot", style: `height:${CHART_HEIGHT}px` });
    this.card = el("div", { class: "card chart", dataset: { key } },
      el("div", { class: "chart-head" }, this.title, this.info), this.plot);
  }

  axis() {
    return this.charts.app.state.chart.x === "step" ? "step" : "time";
  }

  // One tick: decide what this chart lacks and fetch it (one request per kind: full, incremental).
  async update(runs) {
    if (!this.visible || this.busy) return;
    if (this.charts.grouping()) return this.updateGrouped(runs);
    if (this.groups) { this.groups = null; this.groupMark = null; this.dirty = true; }
    if (this.fetchedAxis !== this.axis()) { // times travel only for a time axis: refetch on a change of axis
      this.fetchedAxis = this.axis();
      for (const s of this.series.values()) s.stale = true;
    }
    const ids = runs.map((r) => r.id);
    for (const id of [...this.series.keys()]) if (!ids.includes(id)) { this.series.delete(id); this.dirty = true; }
    const withKey = runs.filter((r) => (r.metric_keys || []).includes(this.key));
    const full = withKey.filter((r) => !this.series.has(r.id) || this.series.get(r.id).stale);
    const grown = withKey.filter((r) => {
      const s = this.series.get(r.id);
      return s && !s.stale && r.last_step !== null && r.last_step !== s.seenRunStep;
    });
    if (!full.length && !grown.length) {
      if (this.dirty) this.draw();
      return;
    }
    this.busy = true;
    try {
      const buckets = bucketsFor(this.plot, withKey.length);
      if (full.length) await this.fetch(full, buckets, false);
      if (grown.length) await this.fetch(grown, buckets, true);
      this.info.textContent = "";
    } catch (error) {
      this.info.textContent = `⚠ ${error.message}`;
    } finally {
      this.busy = false;
    }
    this.draw();
  }

  // Grouped mode: one request for every group's mean and band, again when a run in it has logged since.
  async updateGrouped(runs) {
    const { groupBy, band } = this.charts.app.state.chart;
    const withKey = runs.filter((r) => (r.metric_keys || []).includes(this.key));
    const mark = JSON.stringify([groupBy, band, withKey.map((r) => [r.id, r.last_step, r.state])]);
    const recent = Date.now() - (this.groupedAt || 0) < GROUP_REFRESH_MS;
    if (mark === this.groupMark || (this.groups && this.groupKind === `${groupBy}|${band}` && recent)) {
      if (this.dirty) this.draw();
      return;
    }
    this.busy = true;
    try {
      this.groups = withKey.length ? await fetchGroups(this.key, withKey, groupBy, band, bucketsFor(this.plot, 1)) : [];
      this.groupMark = mark;
      this.groupKind = `${groupBy}|${band}`;
      this.groupedAt = Date.now();
      this.info.textContent = "";
    } catch (error) {
      this.info.textContent = `⚠ ${error.message}`;
    } finally {
      this.busy = false;
    }
    this.dirty = true;
    this.draw();
  }

  async fetch(runs, buckets, incremental) {
    const params = new URLSearchParams({ key: this.key, runs: runs.map((r) => r.id).join(","), buckets });
    if (incremental) params.set("after", runs.map((r) => this.series.get(r.id).lastStep ?? "").join(","));
    params.set("x", this.axis()); // "time" also asks for the points' times, which a step axis does without
    if (this.zoom && !incremental) {
      params.set("lo", this.zoom[0]);
      params.set("hi", this.zoom[1]);
    }
    const body = await getJSON(`/api/series?${params}`);
    for (const run of runs) {
      const got = body.series[run.id];
      const old = this.series.get(run.id);
      if (!got) continue;
      const times = got.times ? unpack(got.times) : new Float64Array(0);
      const part = { steps: unpack(got.steps), times, values: unpack(got.values) };
      if (incremental && old) {
        old.steps = concat(old.steps, part.steps);
        old.times = concat(old.times, part.times);
        old.values = concat(old.values, part.values);
        old.lastStep = got.last_step ?? old.lastStep;
        old.seenRunStep = run.last_step;
        old.total += got.matched;
        old.stale = old.values.length > REFETCH_GROWTH * Math.max(old.base, 4 * buckets);
      } else {
        this.series.set(run.id, {
          ...part, lastStep: got.last_step, seenRunStep: run.last_step, total: got.matched,
          base: Math.max(part.values.length, 1), stale: false, createdAt: run.created_at,
        });
      }
    }
    this.dirty = true;
  }

  traces() {
    const { state } = this.charts.app;
    const { x, smoothing } = state.chart;
    if (this.charts.grouping()) return this.groupedTraces(smoothing);
    const out = [];
    const runs = this.charts.runs.filter((r) => this.series.has(r.id));
    for (const run of runs) {
      const s = this.series.get(run.id);
      const color = this.charts.app.colorOf(run.id);
      const xs = xValues(s, run, x);
      const name = plotlyText(run.name || run.id);
      const base = { type: "scatter", mode: "lines", x: xs, name, legendgroup: run.id, line: { color, width: 1.4 } };
      const hover = `%{y:.5g}<extra>${name}</extra>`;
      if (smoothing > 0) {
        out.push({ ...base, y: s.values, line: { color, width: 1 }, opacity: 0.25, hoverinfo: "skip", showlegend: false });
        out.push({ ...base, y: smooth(s.values, smoothing), hovertemplate: hover, meta: run.id });
      } else {
        out.push({ ...base, y: s.values, hovertemplate: hover, meta: run.id });
      }
      if (s.values.length === 1) out[out.length - 1].mode = "lines+markers";
      const alerts = this.charts.alertsOf(run).filter((a) => a.key === this.key);
      if (alerts.length) out.push(alertMarkers(alerts, run, s, (a) => alertX(a, run, x), name));
    }
    return out;
  }

  draw() {
    if (!this.visible) return;
    if (!window.Plotly) {
      loadPlotly().then(() => this.draw());
      return;
    }
    this.dirty = false;
    const { chart } = this.charts.app.state;
    const traces = this.traces();
    const grouped = this.charts.grouping();
    if (!this.info.textContent.startsWith("⚠")) this.info.textContent = grouped ? this.groupInfo() : this.pointsInfo(traces);
    const layout = {
      height: CHART_HEIGHT,
      margin: { l: 52, r: 12, t: 8, b: 36 },
      showlegend: traces.length > 1 && this.charts.runs.length <= 8,
      legend: { orientation: "h", y: -0.22, x: 0, font: { size: 11 } },
      // one box listing every run is useful for a few runs, a wall of text for fifty
      hovermode: this.charts.runs.length <= 8 ? "x unified" : "closest",
      hoverlabel: { namelength: 40 },
      xaxis: { ...xAxis(grouped ? "step" : chart.x), gridcolor: "#eef0f3", zeroline: false },
      yaxis: { type: chart.logY ? "log" : "linear", gridcolor: "#eef0f3", zeroline: false, exponentformat: "power" },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: "Inter, system-ui, sans-serif", size: 11, color: "#3b4351" },
      uirevision: `${this.key}|${grouped ? "step" : chart.x}|${chart.logY}|${chart.groupBy}`,
    };
    if (grouped) layout.showlegend = traces.length > 0;
    if (layout.showlegend) layout.margin.b = 56;
    const config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
    Plotly.react(this.plot, traces, layout, config);
    if (!this.plotted) {
      this.plotted = true;
      this.plot.on("plotly_relayout", (event) => this.onRelayout(event));
    }
  }

  // Each group's mean and band, and the alerts its runs raised on this key, marked on the group's mean.
  groupedTraces(smoothing) {
    const groups = this.groups || [];
    const out = groupTraces(groups, (values) => smooth(values, smoothing));
    const byId = this.charts.app.state.byId;
    for (const g of groups) {
      const alerts = g.runs.flatMap((id) => (byId.has(id) ? this.charts.alertsOf(byId.get(id)) : []))
        .filter((a) => a.key === this.key);
      const line = { steps: g.steps, values: g.mean };
      if (alerts.length) out.push(alertMarkers(alerts, { id: `group:${g.label}` }, line, (a) => a.step, plotlyText(g.label)));
    }
    return out;
  }

  pointsInfo(traces) {
    const points = this.charts.runs.reduce((n, r) => n + (this.series.get(r.id)?.total || 0), 0);
    const lines = traces.filter((t) => t.meta && !String(t.meta).startsWith("alert:"));
    const shown = lines.reduce((n, t) => n + t.y.length, 0);
    return points > shown ? `${fmtNumber(shown)} of ${fmtNumber(points)} pts (min/max)` : "";
  }

  groupInfo() {
    const groups = this.groups || [];
    const band = BAND_LABELS[this.charts.app.state.chart.band] || "";
    return `${groups.length} group${groups.length === 1 ? "" : "s"} · ${band}`;
  }

  onRelayout(event) {
    if (this.charts.grouping()) return; // grouped charts zoom what they hold
    const mode = this.charts.app.state.chart.x;
    if (event["xaxis.autorange"]) {
      if (this.zoom) { this.zoom = null; this.restart(); }
      return;
    }
    const lo = event["xaxis.range[0]"];
    const hi = event["xaxis.range[1]"];
    if (lo === undefined || hi === undefined || mode === "relative") return; // relative: zoom what is loaded
    this.zoom = mode === "wall" ? [fromPlotlyDate(lo), fromPlotlyDate(hi)] : [Number(lo), Number(hi)];
    this.restart();
  }

  restart() {
    for (const s of this.series.values()) s.stale = true;
    this.charts.tick();
  }

  destroy() {
    if (this.plotted && typeof Plotly !== "undefined") Plotly.purge(this.plot);
    this.card.remove();
  }
}

// Plotly shows epoch milliseconds as UTC; shift them so the axis reads local wall-clock time.
const TZ_SHIFT_MS = () => new Date().getTimezoneOffset() * 60 * 1000;

function fromPlotlyDate(value) {
  const ms = typeof value === "number" ? value : Date.parse(String(value).replace(" ", "T") + "Z");
  return (ms + TZ_SHIFT_MS()) / 1000;
}

// Where an alert sits on the x axis: its step, or its time like the points' times.
function alertX(alert, run, mode) {
  if (mode === "step") return alert.step;
  if (mode === "wall") return alert.time * 1000 - TZ_SHIFT_MS();
  return (alert.time - (run.created_at ?? alert.time)) / 60;
}

function xValues(series, run, mode) {
  if (mode === "step") return series.steps;
  const out = new Float64Array(series.times.length);
  if (mode === "wall") {
    const shift = TZ_SHIFT_MS();
    for (let i = 0; i < out.length; i++) out[i] = series.times[i] * 1000 - shift;
  } else {
    const start = run.created_at ?? series.times[0] ?? 0;
    for (let i = 0; i < out.length; i++) out[i] = (series.times[i] - start) / 60;
  }
  return out;
}

function xAxis(mode) {
  if (mode === "wall") return { type: "date", title: { text: "" } };
  if (mode === "relative") return { type: "linear", title: { text: "minutes since start", standoff: 4 } };
  return { type: "linear", title: { text: "" } };
}

export class Charts {
  constructor(root, app) {
    this.app = app;
    this.charts = new Map();
    this.sections = new Map();
    this.runs = [];
    this.root = root;
    this.alerts = new Alerts();
    this.compare = new ComparePanel(app);
    this.note = el("div", { class: "charts-note", id: "charts-note" });
    this.container = el("div", { class: "chart-sections" });
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const chart = this.charts.get(entry.target.dataset.key);
        if (!chart) continue;
        chart.visible = entry.isIntersecting;
        if (chart.visible) chart.update(this.runs);
      }
    }, { rootMargin: "300px" });
    this.toolbar = this.controls();
    root.append(this.toolbar, this.compare.root, this.note, this.container);
    window.addEventListener("resize", debounce(() => this.restartAll(), 400));
  }

  // After the state changed from outside (a URL opened on this page): the toolbar shows it, the charts follow.
  renderControls() {
    const fresh = this.controls();
    this.toolbar.replaceWith(fresh);
    this.toolbar = fresh;
    this.groupChoices = null;
    this.sync();
    this.redrawAll(true);
  }

  grouping() {
    return Boolean(this.app.state.chart.groupBy);
  }

  alertsOf(run) {
    return this.alerts.of(run, () => this.redrawAll());
  }

  // Group by (the runs' group or a config key), the band, and the compare view's toggle.
  groupControls() {
    const { state } = this.app;
    this.groupSelect = el("select", { id: "group-by", title: "Draw each group as its mean with a band",
      onchange: () => { state.chart.groupBy = this.groupSelect.value; this.bandSelect.hidden = !state.chart.groupBy; this.changed(); } });
    this.bandSelect = el("select", { id: "band", hidden: !state.chart.groupBy,
      onchange: () => { state.chart.band = this.bandSelect.value; this.changed(); } },
      el("option", { value: "std", text: "band ±1 s.d." }), el("option", { value: "minmax", text: "band min–max" }));
    this.bandSelect.value = state.chart.band;
    const compare = el("button", { class: `btn ${state.compare ? "active" : ""}`, id: "compare-toggle", text: "Compare config",
      title: "The compared runs side by side: only the config keys that differ",
      onclick: () => {
        state.compare = !state.compare;
        compare.classList.toggle("active", state.compare);
        this.app.saveView();
        this.compare.render(this.runs);
      } });
    return [el("label", { class: "label" }, "Group ", this.groupSelect), this.bandSelect, compare];
  }

  fillGroupChoices() {
    const choices = groupChoices(this.runs);
    const wanted = this.app.state.chart.groupBy;
    if (wanted && !choices.some(([value]) => value === wanted)) choices.push([wanted, wanted]); // from a URL
    const listing = JSON.stringify(choices);
    if (listing === this.groupChoices) return;
    this.groupChoices = listing;
    this.groupSelect.replaceChildren(...choices.map(([value, text]) => el("option", { value, text })));
    this.groupSelect.value = wanted;
  }

  changed() {
    this.app.saveView();
    for (const chart of this.charts.values()) { chart.dirty = true; chart.groupMark = null; chart.groupedAt = 0; }
    this.redrawAll(true);
    this.tick();
  }

  controls() {
    const { chart } = this.app.state;
    const seg = el("div", { class: "segmented", id: "x-mode" }, ...[["step", "Step"], ["relative", "Time"], ["wall", "Wall clock"]]
      .map(([value, label]) => el("button", {
        class: chart.x === value ? "active" : "", text: label, dataset: { value },
        onclick: (event) => {
          chart.x = value;
          seg.querySelectorAll("button").forEach((b) => b.classList.toggle("active", b === event.currentTarget));
          this.app.saveView();
          this.redrawAll(true); // a zoom range on one axis means nothing on another
        },
      })));
    const smoothValue = el("span", { class: "muted mono", text: chart.smoothing.toFixed(2) });
    const smoothInput = el("input", {
      type: "range", min: 0, max: 0.99, step: 0.01, value: String(chart.smoothing), id: "smoothing",
      oninput: () => {
        chart.smoothing = Number(smoothInput.value);
        smoothValue.textContent = chart.smoothing.toFixed(2);
        this.app.saveView();
        this.redrawAll();
      },
    });
    const logBox = el("input", {
      type: "checkbox", id: "log-y", checked: chart.logY,
      onchange: () => { chart.logY = logBox.checked; this.app.saveView(); this.redrawAll(); },
    });
    const keyFilter = el("input", {
      type: "search", id: "key-filter", placeholder: "Filter charts by key", value: chart.keyFilter,
      oninput: debounce(() => { chart.keyFilter = keyFilter.value; this.app.saveView(); this.sync(); }, 150),
    });
    return el("div", { class: "toolbar chart-controls" },
      el("span", { class: "label", text: "x" }), seg,
      el("label", { class: "label" }, "Smoothing ", smoothInput, smoothValue),
      el("label", { class: "label" }, logBox, " Log y"),
      ...this.groupControls(),
      keyFilter);
  }

  // Which runs are charted: the selection, else the running runs, else the newest run.
  chartedRuns() {
    const { runs, selected } = this.app.state;
    if (selected.size) return { runs: runs.filter((r) => selected.has(r.id)), why: "" };
    const running = runs.filter((r) => r.state === "running");
    if (running.length) return { runs: running, why: "Showing the running runs. Select runs in the table to compare." };
    const newest = runs.slice().sort((a, b) => (b.created_at ?? 0) - (a.created_at ?? 0)).slice(0, 1);
    return { runs: newest, why: newest.length ? "Showing the newest run. Select runs in the table to compare." : "" };
  }

  // Build, keep or drop chart cards to match the charted runs' keys; then fetch what is missing.
  sync() {
    const { runs, why } = this.chartedRuns();
    this.runs = runs;
    this.note.textContent = why;
    this.fillGroupChoices();
    this.compare.render(runs);
    if (this.grouping() && this.app.state.chart.x !== "step") this.note.textContent += " Grouped charts use steps on x.";
    const filter = this.app.state.chart.keyFilter.toLowerCase();
    const keys = [...new Set(runs.flatMap((r) => r.metric_keys || []))]
      .filter((k) => k.toLowerCase().includes(filter))
      .sort();
    for (const [key, chart] of this.charts) {
      if (!keys.includes(key)) { this.observer.unobserve(chart.card); chart.destroy(); this.charts.delete(key); }
    }
    const byNamespace = new Map();
    for (const key of keys) {
      const ns = namespaceOf(key);
      if (!byNamespace.has(ns)) byNamespace.set(ns, []);
      byNamespace.get(ns).push(key);
    }
    const order = [...byNamespace.keys()].sort((a, b) => (a === "") - (b === "") || a.localeCompare(b));
    for (const [ns, section] of this.sections) {
      if (!byNamespace.has(ns)) { section.root.remove(); this.sections.delete(ns); }
    }
    order.forEach((ns, index) => {
      const section = this.section(ns);
      section.count.textContent = String(byNamespace.get(ns).length);
      if (this.container.children[index] !== section.root) this.container.insertBefore(section.root, this.container.children[index] || null);
      byNamespace.get(ns).forEach((key, i) => {
        let chart = this.charts.get(key);
        if (!chart) {
          chart = new Chart(key, this);
          this.charts.set(key, chart);
          this.observer.observe(chart.card);
        }
        if (section.grid.children[i] !== chart.card) section.grid.insertBefore(chart.card, section.grid.children[i] || null);
      });
    });
    if (!keys.length && runs.length) this.note.textContent = filter ? "No chart matches the key filter." : "These runs have logged no scalar metrics yet.";
    this.tick();
  }

  section(ns) {
    let section = this.sections.get(ns);
    if (section) return section;
    const count = el("span", { class: "count" });
    const grid = el("div", { class: "chart-grid" });
    const details = el("details", { class: "namespace", open: true, dataset: { namespace: ns } },
      el("summary", {}, el("span", { class: "ns-name", text: ns || "(no namespace)" }), count), grid);
    section = { root: details, grid, count };
    this.sections.set(ns, section);
    return section;
  }

  tick() {
    for (const chart of this.charts.values()) chart.update(this.runs);
    // every poll, not only on a redraw: a throttled look at a run that just finished still happens later
    for (const run of this.runs) this.alertsOf(run);
  }

  redrawAll(resetZoom = false) {
    for (const chart of this.charts.values()) {
      chart.dirty = true;
      if (resetZoom && chart.zoom !== null) {
        chart.zoom = null;
        chart.restart();
      } else chart.draw();
    }
  }

  restartAll() {
    for (const chart of this.charts.values()) chart.restart();
  }
}
