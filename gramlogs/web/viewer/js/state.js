// The view's state lives in the page's query string, so a reload, back/forward and a copied link
// show the same view. The names are the API's own parameter names; `range` is a preset
// (15m, 1h, 24h, 7d, all), `from`/`to` a custom window (UTC, ISO 8601), `line` a permalink.

export const FILTERS = ["level", "source", "function_id", "deployment_id", "instance", "keyword"];
export const RANGES = {
  "15m": 15 * 60e3,
  "1h": 3600e3,
  "24h": 24 * 3600e3,
  "7d": 7 * 24 * 3600e3,
  all: null,
};
export const DEFAULT_RANGE = "24h";
export const DEFAULT_PER_PAGE = 100;

export function readState(search = location.search) {
  const query = new URLSearchParams(search);
  const filters = {};
  for (const name of FILTERS) {
    const value = query.get(name);
    if (value) filters[name] = value;
  }
  const from = query.get("from");
  const to = query.get("to");
  const line = query.get("line");
  let range = query.get("range");
  if (!(range in RANGES)) range = null;
  // A permalink shows its line whatever the time; a custom window has no preset.
  if (!range) range = line ? "all" : from || to ? null : DEFAULT_RANGE;
  const n = Number(query.get("per_page"));
  const perPage = Number.isInteger(n) && n >= 1 && n <= 100 ? n : DEFAULT_PER_PAGE;
  return { filters, range, from: range ? null : from, to: range ? null : to, line, perPage };
}

export function queryOf(state) {
  const query = new URLSearchParams();
  for (const name of FILTERS) if (state.filters[name]) query.set(name, state.filters[name]);
  if (state.line) query.set("line", state.line);
  else if (state.range) {
    if (state.range !== DEFAULT_RANGE) query.set("range", state.range);
  } else {
    if (state.from) query.set("from", state.from);
    if (state.to) query.set("to", state.to);
  }
  if (state.perPage && state.perPage !== DEFAULT_PER_PAGE) query.set("per_page", state.perPage);
  const text = query.toString();
  return text ? `?${text}` : location.pathname;
}

export function writeState(state, { replace = false } = {}) {
  const target = queryOf(state);
  if (target === location.search || (target === location.pathname && !location.search)) return;
  if (replace) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
}

// The state's time window at `now`: {start, end} as Dates or null (open).
export function windowOf(state, now = new Date()) {
  if (state.range) {
    const span = RANGES[state.range];
    return { start: span === null ? null : new Date(now.getTime() - span), end: null };
  }
  return {
    start: state.from ? new Date(state.from) : null,
    end: state.to ? new Date(state.to) : null,
  };
}

// The list endpoint's parameters for the state's filters and window.
export function listParams(state, window) {
  return {
    ...state.filters,
    ts_start: window.start ? window.start.toISOString() : null,
    ts_end: window.end ? window.end.toISOString() : null,
  };
}
