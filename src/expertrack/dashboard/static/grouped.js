// Grouped charts: the charted runs grouped by their group or one config key, each group drawn as its mean line
// with a band (±1 s.d. or min–max across its runs), as the report figures draw seeds. The server aggregates
// (GET /api/grouped, expertrack.seeds); this module fetches the groups and turns them into plotly traces.

import { getJSON, unpack, plotlyText, PALETTE } from "./util.js";

export const BAND_LABELS = { std: "mean ± 1 s.d.", minmax: "mean, band min–max" };

export async function fetchGroups(key, runs, by, band, buckets) {
  const params = new URLSearchParams({ key, runs: runs.map((r) => r.id).join(","), by, band, buckets });
  const body = await getJSON(`/api/grouped?${params}`);
  return body.groups.map((g) => ({
    label: g.label, runs: g.runs, n: g.n, matched: g.matched,
    steps: unpack(g.steps), mean: unpack(g.mean), low: unpack(g.low), high: unpack(g.high),
  }));
}

function translucent(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

// Per group: the band's lower edge, its upper edge filled down to the lower, then the mean on top.
// `meta` names each trace's role and group (the browser tests read it).
export function groupTraces(groups, smoothLine) {
  const out = [];
  groups.forEach((g, i) => {
    const color = PALETTE[i % PALETTE.length];
    const name = plotlyText(`${g.label} (${g.n} run${g.n === 1 ? "" : "s"})`);
    const edge = { type: "scatter", mode: "lines", x: g.steps, line: { width: 0, color }, hoverinfo: "skip", showlegend: false, legendgroup: g.label };
    out.push({ ...edge, y: smoothLine(g.low), meta: `band-low:${g.label}` });
    out.push({ ...edge, y: smoothLine(g.high), fill: "tonexty", fillcolor: translucent(color, 0.2), meta: `band-high:${g.label}` });
    out.push({
      type: "scatter", mode: g.steps.length === 1 ? "lines+markers" : "lines", x: g.steps, y: smoothLine(g.mean), name,
      legendgroup: g.label, line: { color, width: 1.8 }, hovertemplate: `%{y:.5g}<extra>${name}</extra>`, meta: `group:${g.label}`,
    });
  });
  return out;
}

// What the group-by menu offers for these runs: their group, and each config key (flattened, as the table).
export function groupChoices(runs) {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.config || {})))].sort();
  return [["", "no grouping"], ["group", "group"], ...keys.map((k) => [`config.${k}`, `config: ${k}`])];
}
