// The MoE view of one run: experts x domains heatmap (moe/affinity [L,E,D] token counts) on a step slider,
// utilization per expert per layer (moe/utilization [L,E]) at the same step, and router/load entropy over time.

import { el, getJSON, unpack, plotlyText, fmtNumber, loadPlotly } from "./util.js";

const AFFINITY = "moe/affinity";
const UTILIZATION = "moe/utilization";
// Names as expertrack.moe logs them (src/expertrack/moe/names.py): scalars are means over layers, and
// "<name>_layers" arrays [L] hold the per-layer values.
const ENTROPY = [["moe/router_entropy_norm", "router entropy", "#2563eb"], ["moe/load_entropy_norm", "load entropy", "#ea580c"]];
const PLOT_FONT = { family: "Inter, system-ui, sans-serif", size: 11, color: "#3b4351" };
const PLOT_CONFIG = { displaylogo: false, responsive: true };
const SEQUENTIAL = [[0, "#f7fbff"], [0.25, "#c6dbef"], [0.5, "#6baed6"], [0.75, "#2171b5"], [1, "#08306b"]];

export function hasMoe(run) {
  const arrays = run.array_keys || [];
  return arrays.includes(AFFINITY) || arrays.includes(UTILIZATION)
    || ENTROPY.some(([key]) => (run.metric_keys || []).includes(key));
}

// matrix [E][D] for one layer or summed over layers, then optionally normalised per domain or per expert.
export function affinityMatrix(values, layer, norm) {
  const layers = layer === "all" ? values : [values[Number(layer)]];
  const experts = layers[0].length;
  const domains = layers[0][0].length;
  const z = Array.from({ length: experts }, (_, e) =>
    Array.from({ length: domains }, (_, d) => layers.reduce((sum, m) => sum + m[e][d], 0)));
  if (norm === "domain") {
    for (let d = 0; d < domains; d++) {
      const total = z.reduce((s, row) => s + row[d], 0);
      for (let e = 0; e < experts; e++) z[e][d] = total ? z[e][d] / total : 0;
    }
  } else if (norm === "expert") {
    for (const row of z) {
      const total = row.reduce((s, v) => s + v, 0);
      row.forEach((v, d) => { row[d] = total ? v / total : 0; });
    }
  }
  return z;
}

// The run a link names: an id, a name, or a unique id prefix (as the CLI and the API accept).
export function resolveRun(runs, ref) {
  const exact = runs.find((r) => r.id === ref);
  if (exact) return exact;
  const named = runs.filter((r) => r.name === ref);
  if (named.length) return named.slice().sort((a, b) => (b.created_at ?? 0) - (a.created_at ?? 0))[0];
  const prefixed = runs.filter((r) => r.id.startsWith(ref));
  return prefixed.length === 1 ? prefixed[0] : null;
}

function stepMarker(step) {
  return [{ type: "line", x0: step, x1: step, yref: "paper", y0: 0, y1: 1, line: { color: "#9ca3af", dash: "dash", width: 1 } }];
}

export class MoeView {
  constructor(root, app) {
    this.app = app;
    this.runId = null;
    this.affinity = null; // last answer of /array for AFFINITY
    this.cache = new Map(); // step -> affinity answer
    this.seenRunStep = null;
    this.runSelect = el("select", { id: "moe-run", onchange: () => {
      this.setRun(this.runSelect.value);
      history.replaceState(null, "", `#/moe/${encodeURIComponent(this.runSelect.value)}`); // a link to this run
    } });
    this.layerSelect = el("select", { id: "moe-layer", onchange: () => this.drawAffinity() });
    this.normSelect = el("select", { id: "moe-norm", onchange: () => this.drawAffinity() },
      el("option", { value: "counts", text: "token counts" }),
      el("option", { value: "domain", text: "share of each domain's tokens" }),
      el("option", { value: "expert", text: "share of each expert's tokens" }));
    this.slider = el("input", { type: "range", id: "moe-step", min: 0, max: 0, step: 1, value: 0,
      oninput: () => { this.follow.checked = false; this.showStep(); } });
    this.stepLabel = el("span", { class: "mono", id: "moe-step-label" });
    this.follow = el("input", { type: "checkbox", id: "moe-follow", checked: true,
      onchange: () => { if (this.follow.checked) this.refresh(true); } });
    this.heatmap = el("div", { class: "plot", id: "moe-heatmap" });
    this.valuesTable = el("table", { class: "kv values", id: "moe-values" });
    this.util = el("div", { class: "plot", id: "moe-util" });
    this.utilNote = el("div", { class: "muted small" });
    this.entropy = el("div", { class: "plot", id: "moe-entropy" });
    this.message = el("div", { class: "charts-note", id: "moe-note" });
    root.append(
      el("div", { class: "toolbar" },
        el("label", { class: "label" }, "Run ", this.runSelect),
        el("label", { class: "label" }, "Layer ", this.layerSelect),
        el("label", { class: "label" }, "Show ", this.normSelect)),
      el("div", { class: "toolbar slider-row" },
        el("span", { class: "label", text: "Step" }), this.slider, this.stepLabel,
        el("label", { class: "label" }, this.follow, " follow latest")),
      this.message,
      el("div", { class: "moe-grid" },
        el("div", { class: "card" }, el("div", { class: "chart-head" }, el("div", { class: "chart-title", text: "Experts × domains" })),
          this.heatmap, el("details", { class: "values-box" }, el("summary", { text: "Values" }), this.valuesTable)),
        el("div", { class: "card" }, el("div", { class: "chart-head" }, el("div", { class: "chart-title", text: "Utilization per expert, per layer" })), this.util, this.utilNote),
        el("div", { class: "card wide" }, el("div", { class: "chart-head" }, el("div", { class: "chart-title", text: "Entropy over time (normalised, 1 = uniform)" })), this.entropy)));
  }

  moeRuns() {
    return this.app.state.runs.filter(hasMoe);
  }

  // Called when the view opens (with the run the link names, if any) and on every poll.
  sync(requested) {
    if (requested) {
      this.requested = requested; // resolved once the runs list has arrived (a fresh page has none yet)
      this.runId = null;
    }
    if (!this.app.loaded) {
      this.message.textContent = "Loading…";
      return;
    }
    const runs = this.moeRuns();
    if (this.requested) {
      const wanted = resolveRun(runs, this.requested);
      if (!wanted) {
        this.message.textContent = `No MoE run ${this.requested} in this store (by id, id prefix or name).`;
        return;
      }
      this.requested = null;
      requested = wanted.id;
    }
    const current = this.runSelect.value;
    const listing = JSON.stringify(runs.map((r) => [r.id, r.name, r.state]));
    if (listing !== this.listing) { // rebuilt only when it changes: a rebuild closes an open dropdown
      this.listing = listing;
      this.runSelect.replaceChildren(...runs.map((r) => el("option", { value: r.id, text: `${r.name || r.id} (${r.state})` })));
    }
    const selected = [...this.app.state.selected].find((id) => runs.some((r) => r.id === id));
    const newest = runs.slice().sort((a, b) => (b.created_at ?? 0) - (a.created_at ?? 0))[0];
    const want = requested || this.runId || current || selected || newest?.id;
    if (!runs.length) {
      this.message.textContent = "No run here has MoE metrics (moe/affinity, moe/utilization, entropies). Log them with expertrack.moe.";
      return;
    }
    this.message.textContent = "";
    const id = runs.some((r) => r.id === want) ? want : runs[0].id;
    this.runSelect.value = id;
    if (id !== this.runId) this.setRun(id);
    else this.refresh(false);
  }

  run() {
    return this.app.state.byId.get(this.runId);
  }

  setRun(id) {
    this.runId = id;
    this.affinity = null;
    this.cache.clear();
    this.seenRunStep = null;
    this.follow.checked = true;
    this.refresh(true);
  }

  // Fetch the newest step list (and entropy) when the run has logged since the last look.
  async refresh(force) {
    const run = this.run();
    if (!run) return;
    if (!force && run.last_step === this.seenRunStep) return;
    this.seenRunStep = run.last_step;
    const arrays = run.array_keys || [];
    try {
      await loadPlotly();
      if (arrays.includes(AFFINITY)) {
        const latest = await getJSON(`/api/runs/${encodeURIComponent(run.id)}/array?${new URLSearchParams({ key: AFFINITY })}`);
        this.cache.set(latest.step, latest);
        const previousMax = Number(this.slider.max);
        this.affinity = latest;
        this.slider.max = String(latest.steps.length - 1);
        this.fillLayers(latest.shape[0]);
        if (this.follow.checked || previousMax === 0) this.slider.value = this.slider.max;
      } else {
        Plotly.purge(this.heatmap);
        this.valuesTable.replaceChildren();
      }
      await this.showStep();
      await this.drawEntropy(run);
    } catch (error) {
      this.message.textContent = `⚠ ${error.message}`;
    }
  }

  fillLayers(count) {
    if (this.layerSelect.options.length === count + 1) return;
    const previous = this.layerSelect.value || "all";
    this.layerSelect.replaceChildren(el("option", { value: "all", text: "all layers (sum)" }),
      ...Array.from({ length: count }, (_, i) => el("option", { value: String(i), text: `layer ${i}` })));
    this.layerSelect.value = [...this.layerSelect.options].some((o) => o.value === previous) ? previous : "all";
  }

  currentStep() {
    if (!this.affinity) return this.run()?.last_step ?? null;
    return this.affinity.steps[Number(this.slider.value)] ?? null;
  }

  async showStep() {
    const run = this.run();
    const step = this.currentStep();
    this.stepLabel.textContent = step === null ? "" : `step ${fmtNumber(step)}`;
    if (this.affinity && step !== null) {
      if (!this.cache.has(step)) {
        const params = new URLSearchParams({ key: AFFINITY, step });
        this.cache.set(step, await getJSON(`/api/runs/${encodeURIComponent(run.id)}/array?${params}`));
      }
      this.drawAffinity();
    }
    await this.drawUtilization(run, step);
    if (this.entropy.data && step !== null) Plotly.relayout(this.entropy, { shapes: stepMarker(step) });
  }

  drawAffinity() {
    const answer = this.cache.get(this.currentStep());
    if (!answer) return;
    const norm = this.normSelect.value;
    const z = affinityMatrix(answer.values, this.layerSelect.value || "all", norm);
    const domains = (answer.domains || z[0].map((_, d) => `domain ${d}`)).map(plotlyText);
    const experts = z.map((_, e) => `expert ${e}`);
    const trace = {
      type: "heatmap", z, x: domains, y: experts, colorscale: SEQUENTIAL, hoverongaps: false,
      texttemplate: norm === "counts" ? "%{z:,.0f}" : "%{z:.1%}",
      hovertemplate: "%{y} · %{x}: %{z:.4g}<extra></extra>",
      // the colour bar speaks the cells' unit: percent for shares, counts otherwise
      colorbar: { thickness: 10, outlinewidth: 0, tickformat: norm === "counts" ? ",.0f" : ".0%" },
    };
    Plotly.react(this.heatmap, [trace], {
      height: Math.max(260, 26 * experts.length + 80), margin: { l: 70, r: 10, t: 10, b: 40 }, font: PLOT_FONT,
      yaxis: { autorange: "reversed" }, paper_bgcolor: "rgba(0,0,0,0)",
    }, PLOT_CONFIG);
    this.valuesTable.replaceChildren(
      el("tr", {}, el("th", { text: "" }), ...domains.map((_, d) => el("th", { text: answer.domains?.[d] ?? `domain ${d}` }))),
      ...z.map((row, e) => el("tr", {}, el("th", { text: experts[e] }), ...row.map((v) => el("td", { class: "num", text: fmtNumber(v) })))));
  }

  async drawUtilization(run, step) {
    if (!(run.array_keys || []).includes(UTILIZATION)) { Plotly.purge(this.util); return; }
    const params = new URLSearchParams({ key: UTILIZATION });
    if (step !== null) params.set("step", step);
    const answer = await getJSON(`/api/runs/${encodeURIComponent(run.id)}/array?${params}`);
    const z = answer.shape.length === 1 ? [answer.values] : answer.values;
    const experts = z[0].map((_, e) => `expert ${e}`);
    Plotly.react(this.util, [{
      type: "heatmap", z, x: experts, y: z.map((_, l) => `layer ${l}`), colorscale: "Viridis",
      texttemplate: "%{z:.3f}", hovertemplate: "%{y} · %{x}: %{z:.4f}<extra></extra>",
      colorbar: { thickness: 10, outlinewidth: 0 },
    }], {
      height: Math.max(220, 30 * z.length + 90), margin: { l: 60, r: 10, t: 10, b: 40 }, font: PLOT_FONT,
      yaxis: { autorange: "reversed" }, paper_bgcolor: "rgba(0,0,0,0)",
    }, PLOT_CONFIG);
    this.utilNote.textContent = `Share of routed tokens at step ${fmtNumber(answer.step)}; a uniform router gives ${(1 / experts.length).toFixed(3)} each.`;
  }

  async drawEntropy(run) {
    const traces = [];
    const id = encodeURIComponent(run.id);
    for (const [base, label, color] of ENTROPY) {
      if ((run.metric_keys || []).includes(base)) {
        const body = await getJSON(`/api/series?${new URLSearchParams({ key: base, runs: run.id, buckets: 1000 })}`);
        const s = body.series[run.id];
        if (s) traces.push({ type: "scatter", mode: "lines", x: unpack(s.steps), y: unpack(s.values), name: `${label} (mean over layers)`, line: { color, width: 2.2 } });
      }
      if ((run.array_keys || []).includes(`${base}_layers`)) {
        const body = await getJSON(`/api/runs/${id}/array_series?${new URLSearchParams({ key: `${base}_layers` })}`);
        const steps = unpack(body.steps);
        body.columns.forEach((column, layer) => traces.push({
          type: "scatter", mode: "lines", x: steps, y: unpack(column), name: `${label} · layer ${layer}`,
          line: { color, width: 1, dash: "dot" }, opacity: 0.6, legendgroup: base,
        }));
      }
    }
    if (!traces.length) { Plotly.purge(this.entropy); return; }
    const step = this.currentStep();
    Plotly.react(this.entropy, traces, {
      height: 300, margin: { l: 50, r: 10, t: 36, b: 36 }, font: PLOT_FONT, hovermode: "x unified",
      yaxis: { range: [0, 1.05], gridcolor: "#eef0f3" }, xaxis: { gridcolor: "#eef0f3" },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      shapes: step === null ? [] : stepMarker(step),
      uirevision: run.id,
    }, PLOT_CONFIG);
  }
}
