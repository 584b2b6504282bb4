// The viewer: wires the filters, the URL, the table, the histogram, the live tail and the
// keyboard together. Every request goes through api.js (key in a header, 401 and 503 handled).

import * as api from "./api.js";
import { EXPORT_LIMIT, exportLines } from "./export.js";
import { Histogram } from "./histogram.js";
import { LiveTail } from "./live.js";
import { LIST, Pager } from "./paging.js";
import { FILTERS, listParams, readState, windowOf, writeState } from "./state.js";
import { LogTable } from "./table.js";
import { formatTime, parseTime, setZone, zone } from "./time.js";

const HISTOGRAM = "/rpc/logs.histogram";
const PAGES_KEPT = 5;
const BARS = 60;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const $ = (id) => document.getElementById(id);

let state = readState();
// Lines a page: the URL's per_page (1 to 100) stays for the whole visit.
const perPage = state.perPage;
let window_ = windowOf(state);
let view = new AbortController(); // aborted when the view changes: its answers are stale
let live = null;
let liveBuffer = [];

const table = new LogTable({
  tbody: $("rows"),
  scroller: $("scroller"),
  cap: perPage * PAGES_KEPT,
  permalink: (id) => permalinkOf(id),
});

const pager = new Pager(
  table,
  { scroller: $("scroller"), end: $("end"), perPage },
  {
    params,
    signal: () => view.signal,
    failed,
    busy,
    status: setStatus,
    alert: showAlert,
    changed: updateButtons,
  },
);

const histogram = new Histogram($("histogram"), $("histogram-axis"), $("histogram-summary"), {
  onRange: (from, to) => navigate({ ...state, line: null, range: null, from, to }),
});

// -- messages -------------------------------------------------------------------------------------

function showAlert(message) {
  const alert = $("alert");
  alert.textContent = message;
  alert.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

function failed(error) {
  if (error?.name === "AbortError" || view.signal.aborted) return;
  console.warn(error);
  showAlert(
    error instanceof api.ApiError
      ? `${error.message} (${error.status} ${error.name})`
      : String(error),
  );
}

api.hooks.retrying = (message) => {
  $("status").classList.add("retrying");
  setStatus(`Retrying: ${message}`);
};
api.hooks.recovered = () => {
  $("status").classList.remove("retrying");
  setStatus("");
};

// The table says when it is loading (aria-busy), for screen readers and for tests alike.
function busy(on) {
  $("logs").setAttribute("aria-busy", String(on));
}

// -- signing in -----------------------------------------------------------------------------------

let signedIn = null;

api.hooks.signIn = (message) =>
  new Promise((resolve) => {
    signedIn = resolve;
    const dialog = $("sign-in");
    $("sign-in-message").textContent = message;
    const current = api.credentials();
    $("sign-in-project").value = current?.project || $("sign-in-project").value;
    $("sign-in-key").value = "";
    if (!dialog.open) dialog.showModal();
    ($("sign-in-project").value ? $("sign-in-key") : $("sign-in-project")).focus();
  });

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("sign-in-key").value.trim();
  const project = $("sign-in-project").value.trim();
  // Header values must be printable ASCII: anything else cannot be a key or a project slug.
  const printable = /^[\x21-\x7e]+$/;
  if (!printable.test(key) || !printable.test(project)) {
    $("sign-in-message").textContent =
      "Enter the key and the project's slug (printable characters, no spaces).";
    return;
  }
  api.saveCredentials(key, project, $("sign-in-remember").checked);
  $("sign-in").close();
  showSignedIn();
  const resolve = signedIn;
  signedIn = null;
  resolve?.();
});

// Without a key there is nothing to read: Esc does not close the sign-in.
$("sign-in").addEventListener("cancel", (event) => event.preventDefault());

$("sign-out").addEventListener("click", () => {
  api.forgetCredentials();
  location.reload();
});

function showSignedIn() {
  const c = api.credentials();
  $("signed-in").textContent = c ? `project ${c.project}` : "";
}

// -- the view -------------------------------------------------------------------------------------

function permalinkOf(id) {
  const query = new URLSearchParams();
  for (const name of FILTERS) if (state.filters[name]) query.set(name, state.filters[name]);
  query.set("line", id);
  return `${location.pathname}?${query}`;
}

function navigate(next, { replace = false } = {}) {
  writeState({ ...next, perPage: state.perPage }, { replace });
  load();
}

function params(extra = {}) {
  return { ...listParams(state, window_), per_page: perPage, sort: "desc", ...extra };
}

function fillForm() {
  const form = $("filters");
  for (const name of FILTERS) form.elements[name].value = state.filters[name] || "";
  form.elements.from.value = state.range ? "" : state.from ? formatTime(state.from) : "";
  form.elements.to.value = state.range ? "" : state.to ? formatTime(state.to) : "";
  for (const button of document.querySelectorAll("[data-range]")) {
    button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
  }
}

function updateButtons() {
  $("older").disabled = !table.hasOlder || pager.loading;
  $("newer").disabled = pager.loading;
  const count = table.entries.length;
  $("end").textContent = !count
    ? "No lines match these filters in this time range."
    : table.hasOlder
      ? "Scroll for older lines."
      : "The oldest matching line.";
}

async function load() {
  view.abort();
  view = new AbortController();
  const signal = view.signal;
  stopLive();
  state = readState();
  window_ = windowOf(state);
  fillForm();
  showAlert("");
  histogram.clear("Counting…");
  if (state.line && !UUID.test(state.line)) {
    table.reset([]);
    showAlert(`The link's line id is not a UUID: ${state.line}`);
    return;
  }
  const loadHistogram = drawHistogram(signal).catch(failed);
  const liveOn = $("live").getAttribute("aria-pressed") === "true";
  if (liveOn && !state.line && !state.to) {
    startLive();
  } else {
    if (liveOn) setLive(false);
    await pager.open(state.line, signal);
  }
  await loadHistogram;
}

$("older").addEventListener("click", async () => {
  const first = await pager.older();
  if (first) table.rows.get(first)?.scrollIntoView({ block: "start" });
});

$("newer").addEventListener("click", async () => {
  const adjacent = await pager.newer();
  if (adjacent) table.rows.get(adjacent)?.scrollIntoView({ block: "end" });
});

$("scroller").addEventListener("scroll", () => {
  if (live) flushLive();
});

// -- histogram ------------------------------------------------------------------------------------

async function drawHistogram(signal) {
  const end = window_.end ?? new Date();
  let start = window_.start;
  if (!start) {
    // "All": from the oldest matching line.
    const oldest = await api.getJson(
      LIST,
      { ...listParams(state, window_), per_page: 1, sort: "asc" },
      { signal },
    );
    if (!oldest.logs?.length) {
      histogram.clear("No lines.");
      return;
    }
    start = new Date(oldest.logs[0].timestamp);
  }
  if (start > end) {
    histogram.clear("No lines.");
    return;
  }
  // The widest bucket is a week: a window of more than BARS weeks ("All" over a long history)
  // gets a bar a week, up to the endpoint's 1,000.
  const weeks = Math.ceil((end - start) / (7 * 24 * 3600e3)) + 2;
  const data = await api.getJson(
    HISTOGRAM,
    {
      ...state.filters,
      ts_start: start.toISOString(),
      ts_end: end.toISOString(),
      buckets: Math.min(1000, Math.max(BARS, weeks)),
    },
    { signal },
  );
  if (!signal.aborted) histogram.render(data, start, end);
}

// -- live -----------------------------------------------------------------------------------------

function paused() {
  return $("scroller").scrollTop > 4 || table.expanded !== null;
}

function startLive() {
  stopLive();
  const signal = view.signal;
  table.reset([]);
  busy(true);
  liveBuffer = [];
  const since = window_.start;
  const keep = (entries) =>
    since ? entries.filter((e) => new Date(e.timestamp) >= since) : entries;
  live = new LiveTail(state.filters, {
    // Lines stored from now on come by the tail: the newest page, read after the tail has
    // started, joins them without a gap.
    onStart: async () => {
      try {
        const page = await pager.page({}, signal);
        const logs = page.logs || [];
        table.merge(logs);
        if (page.pagination.has_next_page && logs.length) table.cutBelow(logs.at(-1).id);
      } catch (error) {
        failed(error);
      } finally {
        if (!signal.aborted) busy(false);
        updateButtons();
      }
    },
    onLines: (entries) => {
      liveBuffer.push(...keep(entries));
      flushLive();
    },
    onGone: () => load(),
    onRevoked: () => {
      setLive(false);
      setStatus("Live stopped: the key was revoked. Sign in with another key to go on.");
    },
    onError: (error) => {
      failed(error);
      setLive(false);
    },
  });
  setStatus("Live: new lines appear at the top as they are stored.");
}

function stopLive() {
  live?.stop();
  live = null;
  liveBuffer = [];
  $("new-lines").hidden = true;
}

function flushLive() {
  if (table.hasNewer && !paused()) {
    // Lines were let go while paused (or the window's top was dropped): start again from the
    // newest rather than show a gap.
    startLive();
    return;
  }
  if (!liveBuffer.length) return;
  if (paused()) {
    // Too many waiting: let them go, and page them in from the store when the user comes back.
    if (liveBuffer.length > table.cap) {
      liveBuffer = [];
      table.hasNewer = true;
      $("new-lines").textContent = "Many new lines: show the newest";
    } else {
      $("new-lines").textContent =
        `${liveBuffer.length} new line${liveBuffer.length === 1 ? "" : "s"}`;
    }
    $("new-lines").hidden = false;
    setStatus("Live is paused while you scroll or read a line.");
    return;
  }
  table.merge(liveBuffer);
  liveBuffer = [];
  $("new-lines").hidden = true;
  setStatus("Live: new lines appear at the top as they are stored.");
  updateButtons();
}

function setLive(on) {
  $("live").setAttribute("aria-pressed", String(on));
  if (!on) {
    stopLive();
    setStatus("");
    return;
  }
  if (state.line || state.to) {
    // Live needs a window open to now.
    navigate({ ...state, line: null, to: null, range: state.from ? null : state.range || "24h" });
    return;
  }
  startLive();
}

$("live").addEventListener("click", () =>
  setLive($("live").getAttribute("aria-pressed") !== "true"),
);

$("new-lines").addEventListener("click", () => {
  table.collapse();
  $("scroller").scrollTop = 0;
  if (table.hasNewer) startLive();
  else flushLive();
});

// -- filters --------------------------------------------------------------------------------------

function formState() {
  const form = $("filters");
  const filters = {};
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) filters[name] = value;
  }
  for (const name of ["function_id", "deployment_id"]) {
    if (filters[name] && !UUID.test(filters[name]))
      throw new Error(
        `${name === "function_id" ? "Function" : "Deployment"} must be an id (a UUID).`,
      );
  }
  const from = form.elements.from.value.trim();
  const to = form.elements.to.value.trim();
  const next = { filters, line: null, range: state.range, from: null, to: null };
  if (from || to) {
    const fromDate = from ? parseTime(from) : null;
    const toDate = to ? parseTime(to) : null;
    if (from && !fromDate) throw new Error(`From is not a time: ${from} (try 2026-12-02 14:00)`);
    if (to && !toDate) throw new Error(`To is not a time: ${to} (try 2026-12-02 15:00)`);
    if (fromDate && toDate && fromDate > toDate) throw new Error("From must not be after To.");
    Object.assign(next, {
      range: null,
      from: fromDate?.toISOString() ?? null,
      to: toDate?.toISOString() ?? null,
    });
  }
  return next;
}

function applyForm() {
  try {
    navigate(formState());
  } catch (error) {
    showAlert(error.message);
  }
}

$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  applyForm();
});
for (const name of ["level", "source"])
  $("filters").elements[name].addEventListener("change", applyForm);

$("clear").addEventListener("click", () =>
  navigate({ filters: {}, range: null, from: null, to: null, line: null }),
);

for (const button of document.querySelectorAll("[data-range]")) {
  button.addEventListener("click", () =>
    navigate({ ...state, line: null, range: button.dataset.range, from: null, to: null }),
  );
}

// Click to filter, copy, expand: one listener for the whole table.
$("rows").addEventListener("click", async (event) => {
  const filter = event.target.closest("button[data-filter]");
  if (filter) {
    navigate({
      ...state,
      line: null,
      filters: { ...state.filters, [filter.dataset.filter]: filter.dataset.value },
    });
    return;
  }
  const copy = event.target.closest("button[data-copy]");
  if (copy) {
    await copyText(copy.dataset.copy);
    copy.textContent = "Copied";
    setTimeout(() => (copy.textContent = "Copy"), 1500);
    return;
  }
  const row = event.target.closest("tr.row");
  if (!row || event.target.closest("a") || String(getSelection()).length) return;
  table.select(row.dataset.id, { scroll: false });
  table.toggle(row.dataset.id);
  if (live) flushLive();
});

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard API (a page not served from localhost or https): the old way.
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// -- time zone ------------------------------------------------------------------------------------

function showZone() {
  $("tz").textContent = zone() === "utc" ? "UTC" : "Local";
  $("tz").setAttribute("aria-pressed", String(zone() === "local"));
}

$("tz").addEventListener("click", () => {
  setZone(zone() === "utc" ? "local" : "utc");
  showZone();
  table.redrawTimes();
  histogram.redraw();
  fillForm();
});

// -- export ---------------------------------------------------------------------------------------

$("export-cap").textContent = `NDJSON, up to ${EXPORT_LIMIT.toLocaleString()} lines`;

$("export").addEventListener("click", async () => {
  const button = $("export");
  button.disabled = true;
  try {
    const done = await exportLines(listParams(state, window_), {
      onProgress: (lines) => setStatus(`Exporting… ${lines.toLocaleString()} lines`),
    });
    setStatus(
      done.capped
        ? `Exported ${done.lines.toLocaleString()} lines to ${done.filename}: the export stops at ${done.limit.toLocaleString()} lines; narrow the filters or the time range for the rest.`
        : `Exported ${done.lines.toLocaleString()} lines to ${done.filename}.`,
    );
  } catch (error) {
    failed(error);
  } finally {
    button.disabled = false;
  }
});

// -- keyboard -------------------------------------------------------------------------------------

document.addEventListener("keydown", async (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const typing = event.target.closest?.("input, select, textarea, dialog");
  if (typing) {
    if (event.key === "Escape" && !event.target.closest("dialog")) event.target.blur();
    return;
  }
  if (event.key === "/") {
    event.preventDefault();
    $("f-keyword").focus();
    $("f-keyword").select();
  } else if (event.key === "j") {
    if (!table.move(1) && table.hasOlder) {
      await pager.older();
      table.move(1);
    }
  } else if (event.key === "k") {
    table.move(-1);
  } else if (event.key === "Enter" && table.selected && !event.target.closest("button, a")) {
    event.preventDefault();
    table.toggle(table.selected);
  } else if (event.key === "Escape") {
    if (table.expanded) table.collapse();
    else if (!$("alert").hidden) showAlert("");
    else table.select(null);
  }
});

// -- start ----------------------------------------------------------------------------------------

window.addEventListener("popstate", load);
api.takeFragment();
showSignedIn();
showZone();
load();
