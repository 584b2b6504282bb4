// Keyset paging of the log table: the newest page, the lines around a permalink, and the pages
// just older or just newer than the table's ends, by cursor. One request at a time: `loading`
// is the pager's only state, and the table holds the pages.

import * as api from "./api.js";

export const LIST = "/rpc/logs.listToolExecutionLogs";
// Within this distance of the table's end, the next older page is fetched.
const END_MARGIN_PX = 300;

export class Pager {
  // hooks: params(extra) the list query of the view, signal() the view's current AbortSignal,
  // failed(error), busy(on), status(message), alert(message), changed() after every page.
  constructor(table, { scroller, end, perPage }, hooks) {
    this.table = table;
    this.perPage = perPage;
    this.scroller = scroller;
    this.end = end;
    this.hooks = hooks;
    this.loading = false;
    // Infinite scroll: near the end of the window, the next older page comes in. The observer
    // alone is not enough: it reports changes only, so a page that lands and a scroll to the
    // bottom within one frame leave the end "still intersecting" and nothing would load.
    const edges = new IntersectionObserver(
      (entries) => {
        if (entries.some((entry) => entry.isIntersecting)) this.olderIfNearEnd();
      },
      { root: scroller, rootMargin: `${END_MARGIN_PX}px 0px` },
    );
    edges.observe(end);
    scroller.addEventListener("scroll", () => this.olderIfNearEnd(), { passive: true });
  }

  olderIfNearEnd() {
    if (!this.loading && this.table.hasOlder && this.nearEnd()) this.older();
  }

  // The list endpoint's page for the view, `extra` overriding its parameters.
  page(extra, signal) {
    return api.getJson(LIST, this.hooks.params(extra), { signal });
  }

  // The view's first pages: around `line` when there is one, else the newest.
  async open(line, signal) {
    const { hooks, table } = this;
    try {
      this.loading = true;
      hooks.busy(true);
      if (line) await this.around(line, signal);
      else await this.newest(signal);
    } catch (error) {
      hooks.failed(error);
    } finally {
      if (!signal.aborted) {
        this.loading = false;
        hooks.busy(false);
        if (table.hasOlder && this.nearEnd()) setTimeout(() => this.older());
      }
      hooks.changed();
    }
  }

  async newest(signal) {
    const page = await this.page({}, signal);
    this.table.reset(page.logs || [], { hasNewer: false, hasOlder: page.pagination.has_next_page });
    this.hooks.status(`${this.table.entries.length ? "Newest lines first." : ""}`);
  }

  // A permalink: the line, a page of the lines just newer and a page of those just older.
  async around(id, signal) {
    const { hooks, table } = this;
    const half = Math.max(1, Math.floor(this.perPage / 2));
    const [newer, older] = await Promise.all([
      this.page({ cursor: id, direction: "prev", per_page: half }, signal),
      this.page({ cursor: nextId(id), direction: "next", per_page: half + 1 }, signal),
    ]);
    table.reset([...(newer.logs || []), ...(older.logs || [])], {
      hasNewer: newer.pagination.has_next_page,
      hasOlder: older.pagination.has_next_page,
    });
    if (!table.rows.has(id)) {
      hooks.alert(
        "That line is not in this project, or does not match these filters: showing the lines around where it would be.",
      );
      return;
    }
    table.select(id, { scroll: false });
    table.toggle(id);
    table.rows.get(id).scrollIntoView({ block: "center" });
    hooks.status("The linked line, with the lines just before and after it.");
  }

  // The page just older than the table's bottom; resolves to the first line it added.
  async older() {
    const { hooks, table } = this;
    if (this.loading || !table.hasOlder) return;
    const signal = hooks.signal();
    this.loading = true;
    hooks.changed();
    try {
      const cursor = table.bottom;
      const page = await this.page(cursor ? { cursor } : {}, signal);
      const first = page.logs?.[0];
      table.addOlder(page.logs || [], page.pagination.has_next_page);
      return first?.id;
    } catch (error) {
      hooks.failed(error);
    } finally {
      if (!signal.aborted) {
        this.loading = false;
        const room = table.entries.length + this.perPage <= table.cap;
        if (table.hasOlder && room && this.nearEnd()) setTimeout(() => this.older());
      }
      hooks.changed();
    }
  }

  // The page just newer than the table's top; resolves to the line next to the old top.
  async newer() {
    const { hooks, table } = this;
    if (this.loading) return;
    if (!table.top) return this.older();
    const signal = hooks.signal();
    this.loading = true;
    hooks.changed();
    try {
      const page = await this.page({ cursor: table.top, direction: "prev" }, signal);
      const logs = page.logs || [];
      table.addNewer(logs, page.pagination.has_next_page);
      hooks.status(logs.length ? `${logs.length} newer lines.` : "No newer lines yet.");
      return logs.at(-1)?.id;
    } catch (error) {
      hooks.failed(error);
    } finally {
      if (!signal.aborted) this.loading = false;
      hooks.changed();
    }
  }

  // While the window is not full, pages keep coming until the end is out of reach: a tall screen
  // is filled without a scroll. A full window grows only as the user scrolls.
  nearEnd() {
    const bottom = this.scroller.getBoundingClientRect().bottom;
    return this.end.getBoundingClientRect().top < bottom + END_MARGIN_PX;
  }
}

// The id just after `id`, as a cursor that includes `id` itself when paging older.
function nextId(id) {
  const next = BigInt(`0x${id.replaceAll("-", "")}`) + 1n;
  const hex = next.toString(16).padStart(32, "0").slice(-32);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
