// Alerts a run raised (stored by the alert rules; GET /api/runs/RUN/alerts answers
// [{rule, key, step, value, time, message}]). Each run's list is fetched once, and again only when the run has
// logged since (its last step or state moved). A 404 (a store or server without alerts) means no alerts.

import { getJSON, HttpError, plotlyText } from "./util.js";

// A running run moves on every poll; its alerts are asked for again at most this often.
const REFRESH_MS = 5000;

export class Alerts {
  constructor() {
    this.cache = new Map(); // runId -> {mark, list, promise}
  }

  // The alerts known for `run` now (empty until the first answer); asks the server when the run moved since the
  // last look, and calls `onChange` once the answer differs from what was known.
  of(run, onChange) {
    const mark = `${run.last_step}|${run.state}`;
    let entry = this.cache.get(run.id);
    if (!entry) {
      entry = { mark: null, list: [], promise: null, at: 0 };
      this.cache.set(run.id, entry);
    }
    if (entry.mark !== mark && !entry.promise && Date.now() - entry.at >= REFRESH_MS) {
      entry.mark = mark;
      entry.at = Date.now();
      entry.promise = fetchAlerts(run.id)
        .then((list) => {
          const changed = JSON.stringify(list) !== JSON.stringify(entry.list);
          entry.list = list;
          if (changed && onChange) onChange();
        })
        .catch(() => { entry.mark = null; }) // a passing failure: ask again on the next poll
        .finally(() => { entry.promise = null; });
    }
    return entry.list;
  }
}

export async function fetchAlerts(runId) {
  try {
    const body = await getJSON(`/api/runs/${encodeURIComponent(runId)}/alerts`);
    const list = Array.isArray(body) ? body : (body && body.alerts) || [];
    return list.filter((a) => a && typeof a === "object");
  } catch (error) {
    if (error instanceof HttpError && error.status === 404) return [];
    throw error;
  }
}

// An alert's value as the server sent it: a number, or "NaN"/"Infinity" as strings (JSON has no NaN).
export function alertValue(alert) {
  const v = alert.value;
  if (typeof v === "number") return v;
  if (v === "NaN") return NaN;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  return v === null || v === undefined ? NaN : Number(v);
}

// The y of an alert's marker: its value, or (a NaN or infinite value has no place on the axis) the run's last
// finite point at or before the alert's step.
function markerY(alert, series) {
  const value = alertValue(alert);
  if (Number.isFinite(value)) return value;
  const { steps, values } = series;
  let lo = 0;
  let hi = steps.length;
  while (lo < hi) { // first index past the alert's step
    const mid = (lo + hi) >> 1;
    if (steps[mid] <= alert.step) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo - 1; i >= 0; i--) if (Number.isFinite(values[i])) return values[i];
  return 0;
}

// One plotly trace of red crosses: one per alert of this run on this chart's key, the message on hover.
export function alertMarkers(alerts, run, series, xOf, runName) {
  const text = (a) => plotlyText(`${a.rule ?? "alert"}: ${a.message ?? ""} (value ${a.value}, step ${a.step})`);
  return {
    type: "scatter", mode: "markers", name: "alerts", showlegend: false, meta: `alert:${run.id}`,
    x: alerts.map(xOf), y: alerts.map((a) => markerY(a, series)),
    marker: { symbol: "x-thin", size: 13, color: "#dc2626", line: { width: 2.5, color: "#dc2626" } },
    text: alerts.map(text), hovertemplate: `⚠ %{text}<extra>${runName}</extra>`,
  };
}
