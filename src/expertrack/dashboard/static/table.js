// The runs table: filter, sort, choose metric and config columns, select runs to compare.
// Rows are kept and updated in place between polls, so a click never lands on a row being rebuilt.

import { el, fmtNumber, fmtValue, fmtDuration, fmtAgo, fmtDate, runDuration, stateBadge } from "./util.js";

const BASE_COLUMNS = [
  { id: "name", label: "Name", value: (r) => r.name ?? r.id, render: renderName },
  { id: "state", label: "State", value: (r) => r.state, render: (td, r) => td.replaceChildren(stateBadge(r.state)) },
  { id: "project", label: "Project", value: (r) => r.project },
  { id: "group", label: "Group", value: (r) => r.group },
  { id: "tags", label: "Tags", value: (r) => (r.tags || []).join(" "), render: renderTags },
  { id: "steps", label: "Steps", numeric: true, value: (r) => r.last_step },
  { id: "duration", label: "Duration", numeric: true, value: runDuration, format: fmtDuration },
  { id: "created", label: "Created", value: (r) => r.created_at, format: fmtDate, title: (r) => fmtAgo(r.created_at) },
];

function renderName(td, run) {
  let link = td.firstChild;
  if (!link) {
    link = el("a", { class: "run-link" });
    td.append(link);
  }
  link.href = `#/run/${encodeURIComponent(run.id)}`;
  link.textContent = run.name || run.id;
  link.title = `${run.id}`;
}

function renderTags(td, run) {
  const tags = run.tags || [];
  if (td.dataset.tags === JSON.stringify(tags)) return;
  td.dataset.tags = JSON.stringify(tags);
  td.replaceChildren(...tags.map((tag) => el("span", { class: "chip", text: tag })));
}

function metricColumn(key, which) {
  const arrow = (run) => (run.metrics?.[key]?.goal === "max" ? "↑" : "↓");
  return {
    id: `metric:${which}:${key}`,
    label: key,
    sublabel: which,
    numeric: true,
    value: (r) => {
      const stats = r.metrics?.[key];
      return stats ? stats[which] : null;
    },
    format: fmtNumber,
    title: (r) => {
      const stats = r.metrics?.[key];
      if (!stats) return "";
      return which === "best" ? `${stats.goal} at step ${stats.best_step} ${arrow(r)}` : `at step ${stats.last_step}`;
    },
  };
}

function configColumn(key) {
  return { id: `config:${key}`, label: key, sublabel: "config", value: (r) => r.config?.[key], format: fmtValue };
}

// "name:foo tag:moe lr" -> every token must match; "field:value" looks in one field (or config key).
export function matchesFilter(run, filter) {
  const tokens = filter.toLowerCase().split(/\s+/).filter(Boolean);
  const haystack = (values) => values.filter((v) => v !== null && v !== undefined).map((v) => String(v).toLowerCase());
  return tokens.every((token) => {
    const colon = token.indexOf(":");
    if (colon > 0) {
      const field = token.slice(0, colon);
      const wanted = token.slice(colon + 1);
      let values;
      if (field === "tag" || field === "tags") values = run.tags || [];
      else if (["name", "project", "group", "state", "id"].includes(field)) values = [run[field]];
      else if (field.startsWith("config.")) values = [run.config?.[field.slice(7)]];
      else values = null;
      if (values) return haystack(values).some((v) => v.includes(wanted));
    }
    const all = haystack([run.name, run.id, run.project, run.group, run.state, ...(run.tags || [])]);
    return all.some((v) => v.includes(token));
  });
}

function compare(a, b) {
  const missingA = a === null || a === undefined || a === "";
  const missingB = b === null || b === undefined || b === "";
  if (missingA || missingB) return missingA === missingB ? 0 : missingA ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

export class RunsTable {
  constructor(root, app) {
    this.app = app;
    this.rows = new Map();
    this.layout = "";
    this.head = el("thead");
    this.body = el("tbody");
    this.empty = el("div", { class: "empty", hidden: true });
    this.count = el("span", { class: "muted", id: "runs-count" });
    this.filterInput = el("input", {
      type: "search", id: "runs-filter", placeholder: "Filter runs: text, or name: project: group: tag: state: config.lr:",
      oninput: () => { app.state.filter = this.filterInput.value; this.render(); },
    });
    this.picker = new ColumnPicker(app, () => app.columnsChanged());
    const toolbar = el("div", { class: "toolbar" },
      this.filterInput,
      this.picker.button,
      el("button", { class: "btn", id: "clear-selection", text: "Clear selection", onclick: () => app.setSelection([]) }),
      this.count);
    root.append(toolbar, this.picker.panel,
      el("div", { class: "table-wrap" }, el("table", { class: "runs", id: "runs-table" }, this.head, this.body)),
      this.empty);
  }

  columns() {
    const { metricCols, configCols } = this.app.state;
    return [
      ...BASE_COLUMNS,
      ...(metricCols || []).flatMap((key) => [metricColumn(key, "last"), metricColumn(key, "best")]),
      ...(configCols || []).map(configColumn),
    ];
  }

  renderHead(columns) {
    const { sort } = this.app.state;
    this.selectAll = el("input", {
      type: "checkbox", title: "Select every run shown",
      onchange: () => {
        const shown = this.visible.map((r) => r.id);
        if (this.selectAll.checked) this.app.setSelection([...new Set([...this.app.state.selected, ...shown])]);
        else this.app.setSelection([...this.app.state.selected].filter((id) => !shown.includes(id)));
      },
    });
    const cells = columns.map((col) => {
      const active = sort.id === col.id;
      const th = el("th", {
        class: `${col.numeric ? "num" : ""} ${active ? "sorted" : ""}`, title: `Sort by ${col.label}`,
        dataset: { col: col.id },
        onclick: () => {
          this.app.state.sort = { id: col.id, dir: active ? -sort.dir : col.numeric ? -1 : 1 };
          this.layout = "";
          this.render();
        },
      }, el("span", { class: "th-label" }, col.label,
        active ? el("span", { class: "sort-arrow", text: sort.dir > 0 ? " ▲" : " ▼" }) : null),
      col.sublabel ? el("span", { class: "th-sub", text: col.sublabel }) : null);
      return th;
    });
    this.head.replaceChildren(el("tr", {}, el("th", { class: "sel" }, this.selectAll), ...cells));
  }

  render() {
    const { runs, filter, sort, selected } = this.app.state;
    const columns = this.columns();
    const layout = columns.map((c) => c.id).join("\u0000");
    if (layout !== this.layout) {
      this.layout = layout;
      this.renderHead(columns);
      this.rows.forEach((row) => row.tr.remove());
      this.rows.clear();
    }
    let visible = runs.filter((r) => matchesFilter(r, filter));
    const sortCol = columns.find((c) => c.id === sort.id) || BASE_COLUMNS[7];
    visible = visible.slice().sort((a, b) => sort.dir * compare(sortCol.value(a), sortCol.value(b)));
    this.visible = visible;
    const keep = new Set(visible.map((r) => r.id));
    for (const [id, row] of this.rows) if (!keep.has(id)) { row.tr.remove(); this.rows.delete(id); }
    visible.forEach((run, index) => {
      const row = this.rows.get(run.id) || this.createRow(run, columns);
      this.updateRow(row, run, columns);
      if (this.body.children[index] !== row.tr) this.body.insertBefore(row.tr, this.body.children[index] || null);
    });
    const nSelected = [...selected].filter((id) => keep.has(id)).length;
    this.selectAll.checked = visible.length > 0 && nSelected === visible.length;
    this.selectAll.indeterminate = nSelected > 0 && nSelected < visible.length;
    this.count.textContent = `${visible.length} of ${runs.length} runs · ${selected.size} selected`;
    this.empty.hidden = runs.length > 0;
    this.empty.textContent = "No runs in this store yet. Start one with expertrack.init(...) or `expertrack run -- CMD`; it appears here live.";
  }

  createRow(run, columns) {
    const box = el("input", {
      type: "checkbox", class: "select-run", title: "Compare this run",
      onchange: () => this.app.toggleSelected(run.id, box.checked),
    });
    const swatch = el("span", { class: "swatch" });
    const cells = columns.map((col) => el("td", { class: col.numeric ? "num" : "" }));
    const tr = el("tr", { dataset: { runId: run.id } }, el("td", { class: "sel" }, box, swatch), ...cells);
    tr.addEventListener("click", (event) => {
      if (event.target.closest("a, input")) return;
      box.checked = !box.checked;
      this.app.toggleSelected(run.id, box.checked);
    });
    const row = { tr, box, swatch, cells };
    this.rows.set(run.id, row);
    return row;
  }

  updateRow(row, run, columns) {
    const selected = this.app.state.selected.has(run.id);
    row.box.checked = selected;
    row.tr.classList.toggle("selected", selected);
    row.swatch.style.background = selected ? this.app.colorOf(run.id) : "transparent";
    columns.forEach((col, i) => {
      const td = row.cells[i];
      if (col.render) col.render(td, run);
      else {
        const value = col.value(run);
        const text = col.format ? col.format(value) : value === null || value === undefined ? "" : String(value);
        if (td.textContent !== text) td.textContent = text;
      }
      if (col.title) td.title = col.title(run);
    });
  }
}

class ColumnPicker {
  constructor(app, onChange) {
    this.app = app;
    this.onChange = onChange;
    this.button = el("button", { class: "btn", id: "columns-button", text: "Columns ▾", onclick: () => this.toggle() });
    this.search = el("input", { type: "search", placeholder: "Find a metric or config key", oninput: () => this.fill() });
    this.lists = el("div", { class: "picker-lists" });
    this.panel = el("div", { class: "picker", hidden: true }, this.search, this.lists);
  }

  toggle() {
    this.panel.hidden = !this.panel.hidden;
    if (!this.panel.hidden) this.fill();
  }

  fill() {
    const { runs, metricCols, configCols } = this.app.state;
    const query = this.search.value.toLowerCase();
    const metricKeys = [...new Set(runs.flatMap((r) => r.metric_keys || []))].sort();
    const configKeys = [...new Set(runs.flatMap((r) => Object.keys(r.config || {})))].sort();
    const section = (title, keys, chosen = [], key) => el("div", { class: "picker-section" },
      el("h4", { text: title }),
      ...keys.filter((k) => k.toLowerCase().includes(query)).map((k) => el("label", { class: "picker-item" },
        el("input", {
          type: "checkbox", checked: chosen.includes(k),
          onchange: (event) => {
            const list = this.app.state[key] || [];
            this.app.state[key] = event.target.checked ? [...list, k] : list.filter((x) => x !== k);
            this.onChange();
          },
        }),
        el("span", { text: k }))));
    this.lists.replaceChildren(
      section("Metrics (last and best)", metricKeys, metricCols, "metricCols"),
      section("Config", configKeys, configCols, "configCols"));
  }
}

// Auxiliary losses a model logs beside its main one (load balancing, router z-loss, MoE aux): never a default.
const AUX_LOSS = /(^|[/_])(moe|aux|z|lb|load|balance|balancing|router|bal)(_|$)/i;

// How much a loss key looks like *the* loss: "train/loss" and "val/loss" before "loss", before "train/xx_loss".
function lossRank(key) {
  const leaf = key.slice(key.lastIndexOf("/") + 1).toLowerCase();
  const split = /(^|\/)(train|val|valid|validation|eval|test)\//i.test(key) || !key.includes("/");
  return (leaf === "loss" ? 0 : 2) + (split ? 0 : 1);
}

// Columns a first visit shows: the main loss metrics, and the config keys whose values differ between runs.
export function defaultColumns(runs) {
  const metricKeys = [...new Set(runs.flatMap((r) => r.metric_keys || []))].sort();
  const losses = metricKeys.filter((k) => /loss$/i.test(k) && !AUX_LOSS.test(k.slice(k.lastIndexOf("/") + 1)));
  const ranked = (losses.length ? losses : metricKeys.filter((k) => /loss$/i.test(k)))
    .map((k, i) => [lossRank(k), i, k]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, , k]) => k);
  const metricCols = ranked.slice(0, 2);
  const configKeys = [...new Set(runs.flatMap((r) => Object.keys(r.config || {})))].sort();
  const scalar = (k) => runs.every((r) => typeof (r.config?.[k] ?? 0) !== "object");
  const varying = configKeys.filter((k) => scalar(k) && new Set(runs.map((r) => JSON.stringify(r.config?.[k] ?? null))).size > 1);
  return { metricCols, configCols: varying.slice(0, 4) };
}

