// The runs view's state in the page's URL, so a view can be shared and reloaded:
//   #/?runs=ID,ID&x=step&smooth=0.6&log=1&group=config.lr&band=minmax&compare=1&keys=loss
// Runs are named by id (a name or a unique id prefix works too). What the URL leaves out keeps the value the
// browser last used (localStorage), so a plain #/ still opens where the user left off.

const X_MODES = ["step", "relative", "wall"];
const BANDS = ["std", "minmax"];

// "#/run/abc?x=1" -> {path: ["run", "abc"], query: URLSearchParams}
export function splitHash(hash) {
  const text = hash.replace(/^#\/?/, "");
  const mark = text.indexOf("?");
  const path = (mark < 0 ? text : text.slice(0, mark)).split("/").filter((p, i) => p || i === 0);
  return { path, query: new URLSearchParams(mark < 0 ? "" : text.slice(mark + 1)) };
}

// The parts of the state a query names: {refs, chart: {...}, compare}; absent parts are left out.
export function readQuery(query) {
  const out = { chart: {} };
  if (query.has("runs")) out.refs = query.get("runs").split(",").filter(Boolean);
  const x = query.get("x");
  if (X_MODES.includes(x)) out.chart.x = x;
  const smooth = Number(query.get("smooth"));
  if (query.has("smooth") && smooth >= 0 && smooth < 1) out.chart.smoothing = smooth;
  if (query.has("log")) out.chart.logY = query.get("log") === "1";
  if (query.has("group")) out.chart.groupBy = query.get("group");
  if (BANDS.includes(query.get("band"))) out.chart.band = query.get("band");
  if (query.has("keys")) out.chart.keyFilter = query.get("keys");
  if (query.has("compare")) out.compare = query.get("compare") === "1";
  return out;
}

// The URL hash of the runs view for `state` (only what differs from the defaults, for short links).
export function runsHash(state) {
  const { chart } = state;
  const query = new URLSearchParams();
  if (state.selected.size) query.set("runs", [...state.selected].join(","));
  if (chart.x !== "step") query.set("x", chart.x);
  if (chart.smoothing) query.set("smooth", String(chart.smoothing));
  if (chart.logY) query.set("log", "1");
  if (chart.groupBy) query.set("group", chart.groupBy);
  if (chart.groupBy && chart.band !== "std") query.set("band", chart.band);
  if (chart.keyFilter) query.set("keys", chart.keyFilter);
  if (state.compare) query.set("compare", "1");
  const text = query.toString().replace(/%2C/g, ",");
  return text ? `#/?${text}` : "#/";
}
