// The compare view: the charted runs side by side, showing only the config keys whose values differ between
// them (what an ablation table in a paper shows); the keys they share are counted, and shown on request.

import { el, fmtValue } from "./util.js";

// Config keys (flattened, as the runs table has them) whose value is not the same in every run.
export function differingKeys(runs) {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.config || {})))].sort();
  const same = [];
  const differ = [];
  for (const key of keys) {
    const values = new Set(runs.map((r) => JSON.stringify(r.config?.[key] ?? null)));
    (values.size > 1 ? differ : same).push(key);
  }
  return { differ, same };
}

export class ComparePanel {
  constructor(app) {
    this.app = app;
    this.showAll = false;
    this.root = el("div", { class: "card compare", id: "compare-panel", hidden: true });
  }

  render(runs) {
    const on = this.app.state.compare;
    this.root.hidden = !on;
    if (!on) return;
    if (runs.length < 2) {
      this.root.replaceChildren(el("div", { class: "muted", text: "Select two or more runs to compare their config." }));
      return;
    }
    const { differ, same } = differingKeys(runs);
    const shown = this.showAll ? [...differ, ...same].sort() : differ;
    const head = el("tr", {}, el("th", { text: "config key" }),
      ...runs.map((r) => el("th", {}, el("span", { class: "swatch", style: `background:${this.app.colorOf(r.id)}` }), " ", r.name || r.id)));
    const rows = shown.map((key) => el("tr", { class: differ.includes(key) ? "differs" : "same", dataset: { key } },
      el("th", { class: "mono", text: key }),
      ...runs.map((r) => el("td", { class: "mono", text: fmtValue(r.config?.[key] ?? null) }))));
    const toggle = el("button", {
      class: "btn small", id: "compare-all", text: this.showAll ? "Only keys that differ" : `Also the ${same.length} shared keys`,
      onclick: () => { this.showAll = !this.showAll; this.render(runs); },
    });
    const title = differ.length
      ? `${differ.length} config key${differ.length === 1 ? "" : "s"} differ between these ${runs.length} runs`
      : `These ${runs.length} runs share every config key`;
    this.root.replaceChildren(el("div", { class: "chart-head" }, el("h3", { text: title }), same.length ? toggle : null),
      el("div", { class: "table-scroll" }, el("table", { class: "kv compare-table", id: "compare-table" }, head, ...rows)));
  }
}
