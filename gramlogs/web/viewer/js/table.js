// The log table: a window of consecutive lines, newest first, that grows at either end by cursor
// pages and never holds more than `cap` rows (the far end is dropped, and paged back in when the
// user returns), so it stays smooth after thousands of lines.

import { formatTime } from "./time.js";

const COLUMNS = 6;

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

const LABELS = {
  level: "level",
  source: "source",
  instance: "instance",
  function_id: "function",
  deployment_id: "deployment",
};

function filterButton(name, value, text = value, inTable = true) {
  const attributes = {
    type: "button",
    className: "filter",
    dataset: { filter: name, value },
    title: `Show only lines with this ${LABELS[name]}`,
  };
  // Four buttons a row would make Tab crawl: in the table they are for the mouse; the keyboard
  // reaches the same filters in an expanded line.
  if (inTable) attributes.tabindex = "-1";
  else attributes["aria-label"] = `Filter by ${LABELS[name]} ${value}`;
  return el("button", attributes, text);
}

function copyButton(what, value) {
  return el(
    "button",
    { type: "button", className: "copy", dataset: { copy: value }, "aria-label": `Copy ${what}` },
    "Copy",
  );
}

function jsonTree(value, depth = 0) {
  if (value === null || typeof value !== "object") {
    const kind = value === null ? "null" : typeof value;
    return el("span", { className: `json-${kind}` }, JSON.stringify(value));
  }
  const entries = Array.isArray(value)
    ? value.map((v, i) => [String(i), v])
    : Object.entries(value);
  const summary = Array.isArray(value)
    ? `[…] ${entries.length} ${entries.length === 1 ? "item" : "items"}`
    : `{…} ${entries.length} ${entries.length === 1 ? "key" : "keys"}`;
  const details = el("details", depth < 2 ? { open: "" } : {}, el("summary", {}, summary));
  const list = el("ul", { className: "json" });
  for (const [key, child] of entries) {
    list.append(
      el("li", {}, el("span", { className: "json-key" }, `${key}: `), jsonTree(child, depth + 1)),
    );
  }
  details.append(list);
  return details;
}

function attributesOf(text) {
  if (text === undefined || text === "" || text === "{}") return null;
  try {
    return jsonTree(JSON.parse(text));
  } catch {
    return el("pre", {}, text);
  }
}

export class LogTable {
  constructor({ tbody, scroller, cap, permalink }) {
    this.tbody = tbody;
    this.scroller = scroller;
    this.cap = cap;
    this.permalink = permalink; // entry id -> URL of the view on that line
    this.entries = []; // newest first
    this.rows = new Map(); // id -> tr
    this.hasNewer = false;
    this.hasOlder = false;
    this.selected = null;
    this.expanded = null;
  }

  get top() {
    return this.entries.length ? this.entries[0].id : null;
  }

  get bottom() {
    return this.entries.length ? this.entries[this.entries.length - 1].id : null;
  }

  reset(entries, { hasNewer = false, hasOlder = false } = {}) {
    this.entries = [];
    this.rows.clear();
    this.tbody.replaceChildren();
    this.selected = null;
    this.expanded = null;
    this.hasNewer = hasNewer;
    this.hasOlder = hasOlder;
    this._insertAt(0, entries);
    this.scroller.scrollTop = 0;
  }

  // A page older than the bottom row; drops rows from the top past the cap.
  addOlder(entries, hasOlder) {
    this._insertAt(
      this.entries.length,
      entries.filter((e) => !this.rows.has(e.id)),
    );
    this.hasOlder = hasOlder;
    const extra = this.entries.length - this.cap;
    if (extra > 0) this._dropTop(extra);
  }

  // A page newer than the top row; keeps what the user looks at in place and drops rows from the
  // bottom past the cap.
  addNewer(entries, hasNewer) {
    const fresh = entries.filter((e) => !this.rows.has(e.id));
    this._keepingView(() => this._insertAt(0, fresh));
    this.hasNewer = hasNewer;
    const extra = this.entries.length - this.cap;
    if (extra > 0) this._dropBottom(extra);
  }

  // Lines from anywhere (the live tail, a page that overlaps): each goes where its id sorts,
  // if it lies inside the window or beyond an end that has nothing past it. Returns how many
  // were added.
  merge(entries) {
    let added = 0;
    for (const entry of entries) {
      if (this.rows.has(entry.id)) continue;
      if (this.hasOlder && this.bottom !== null && entry.id < this.bottom) continue;
      if (this.hasNewer && this.top !== null && entry.id > this.top) continue;
      this._insertAt(this._position(entry.id), [entry]);
      added += 1;
    }
    const extra = this.entries.length - this.cap;
    if (extra > 0) this._dropBottom(extra);
    return added;
  }

  // Rows older than `id` go (they are paged back in from `id` on).
  cutBelow(id) {
    let index = this._position(id);
    if (this.entries[index]?.id === id) index += 1;
    const extra = this.entries.length - index;
    if (extra > 0) this._dropBottom(extra);
    this.hasOlder = true;
  }

  _position(id) {
    // First index whose id is lower than `id` (entries are newest first).
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entries[mid].id > id) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  _insertAt(index, entries) {
    if (!entries.length) return;
    const fragment = document.createDocumentFragment();
    for (const entry of entries) {
      const tr = this._row(entry);
      this.rows.set(entry.id, tr);
      fragment.append(tr);
    }
    const next = this.entries[index];
    const before = next ? this.rows.get(next.id) : null;
    this.tbody.insertBefore(fragment, before);
    this.entries.splice(index, 0, ...entries);
  }

  _remove(entries) {
    for (const entry of entries) {
      const tr = this.rows.get(entry.id);
      if (tr.nextSibling?.classList.contains("detail")) tr.nextSibling.remove();
      tr.remove();
      this.rows.delete(entry.id);
      if (this.selected === entry.id) this.selected = null;
      if (this.expanded === entry.id) this.expanded = null;
    }
  }

  _dropTop(count) {
    this._keepingView(() => this._remove(this.entries.splice(0, count)));
    this.hasNewer = true;
  }

  _dropBottom(count) {
    this._remove(this.entries.splice(this.entries.length - count, count));
    this.hasOlder = true;
  }

  // Runs `change` (rows added or removed above the view) without moving what is on screen.
  _keepingView(change) {
    const anchor = this._firstVisible();
    const before = anchor ? anchor.getBoundingClientRect().top : 0;
    change();
    if (anchor?.isConnected && this.scroller.scrollTop > 0) {
      this.scroller.scrollTop += anchor.getBoundingClientRect().top - before;
    }
  }

  _firstVisible() {
    const top = this.scroller.getBoundingClientRect().top;
    for (const entry of this.entries) {
      const tr = this.rows.get(entry.id);
      if (tr.getBoundingClientRect().bottom > top) return tr;
    }
    return null;
  }

  _row(entry) {
    const message = entry.message ?? entry.raw_log;
    return el(
      "tr",
      { className: `row level-${entry.level}`, dataset: { id: entry.id } },
      el("td", { className: "c-time", title: entry.timestamp }, formatTime(entry.timestamp)),
      el("td", { className: "c-level" }, filterButton("level", entry.level)),
      el("td", { className: "c-source" }, filterButton("source", entry.source)),
      el(
        "td",
        { className: "c-instance" },
        entry.instance ? filterButton("instance", entry.instance) : "",
      ),
      el(
        "td",
        { className: "c-function" },
        filterButton("function_id", entry.function_id, entry.function_id.slice(0, 8)),
      ),
      el("td", { className: "c-message" }, message),
    );
  }

  // Times are drawn in the zone chosen at the time; a change redraws them.
  redrawTimes() {
    for (const entry of this.entries) {
      this.rows.get(entry.id).firstChild.textContent = formatTime(entry.timestamp);
    }
    if (this.expanded) this._detail(this.expanded, true);
  }

  entry(id) {
    return this.entries.find((e) => e.id === id);
  }

  select(id, { scroll = true } = {}) {
    if (this.selected) this.rows.get(this.selected)?.removeAttribute("aria-current");
    this.selected = id;
    const tr = id ? this.rows.get(id) : null;
    if (!tr) return;
    tr.setAttribute("aria-current", "true");
    if (scroll) tr.scrollIntoView({ block: "nearest" });
  }

  // The line `delta` rows from the selected one (the first on screen when none is); false at an
  // end of the window.
  move(delta) {
    if (!this.entries.length) return false;
    let index = this.selected ? this.entries.findIndex((e) => e.id === this.selected) : -1;
    if (index < 0) {
      const first = this._firstVisible();
      index = first ? this.entries.findIndex((e) => e.id === first.dataset.id) : 0;
      this.select(this.entries[Math.max(index, 0)].id);
      return true;
    }
    const next = index + delta;
    if (next < 0 || next >= this.entries.length) return false;
    this.select(this.entries[next].id);
    return true;
  }

  toggle(id) {
    const open = this.expanded === id;
    if (this.expanded) this._detail(this.expanded, false);
    this.expanded = null;
    if (!open) {
      this._detail(id, true);
      this.expanded = id;
    }
  }

  collapse() {
    if (this.expanded) this.toggle(this.expanded);
  }

  _detail(id, show) {
    const tr = this.rows.get(id);
    if (!tr) return;
    if (tr.nextSibling?.classList.contains("detail")) tr.nextSibling.remove();
    tr.setAttribute("aria-expanded", String(show));
    if (show) tr.after(this._detailRow(this.entry(id)));
  }

  _detailRow(entry) {
    const field = (name, value, ...actions) =>
      el(
        "div",
        { className: "kv" },
        el("dt", {}, name),
        el("dd", {}, el("code", {}, value), ...actions),
      );
    const link = this.permalink(entry.id);
    const sections = [
      el(
        "dl",
        { className: "fields" },
        field("id", entry.id, copyButton("id", entry.id)),
        field("timestamp", `${entry.timestamp} (${formatTime(entry.timestamp)})`),
        field("level", entry.level, filterButton("level", entry.level, "Filter", false)),
        field("source", entry.source, filterButton("source", entry.source, "Filter", false)),
        field(
          "instance",
          entry.instance || "—",
          ...(entry.instance ? [filterButton("instance", entry.instance, "Filter", false)] : []),
        ),
        field(
          "function_id",
          entry.function_id,
          filterButton("function_id", entry.function_id, "Filter", false),
          copyButton("function id", entry.function_id),
        ),
        field(
          "deployment_id",
          entry.deployment_id,
          filterButton("deployment_id", entry.deployment_id, "Filter", false),
          copyButton("deployment id", entry.deployment_id),
        ),
        field("project_id", entry.project_id),
      ),
    ];
    if (entry.message !== undefined) {
      sections.push(
        el("h3", {}, "message ", copyButton("message", entry.message)),
        el("pre", {}, entry.message),
      );
    }
    sections.push(
      el("h3", {}, "raw_log ", copyButton("raw log", entry.raw_log)),
      el("pre", {}, entry.raw_log),
    );
    const attributes = attributesOf(entry.attributes);
    if (attributes)
      sections.push(
        el("h3", {}, "attributes ", copyButton("attributes", entry.attributes)),
        attributes,
      );
    sections.push(
      el(
        "p",
        { className: "actions" },
        el("a", { href: link }, "Link to this line, with context"),
        " ",
        copyButton("link", new URL(link, location.href).href),
      ),
    );
    return el(
      "tr",
      { className: "detail" },
      el("td", { colspan: String(COLUMNS) }, el("div", { className: "detail-body" }, ...sections)),
    );
  }
}
