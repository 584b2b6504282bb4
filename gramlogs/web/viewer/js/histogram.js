// Counts over time above the table (GET /rpc/logs.histogram): one bar a bucket; a click on a bar,
// or a drag across bars, sets the time filter to those buckets.

import { formatTick, formatTime } from "./time.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

export class Histogram {
  constructor(svgElement, axis, summary, { onRange }) {
    this.svg = svgElement;
    this.axis = axis;
    this.summary = summary;
    this.onRange = onRange;
    this.data = null;
    this.dragFrom = null;
    this.svg.addEventListener("pointerdown", (e) => this._down(e));
    this.svg.addEventListener("pointermove", (e) => this._move(e));
    this.svg.addEventListener("pointerup", (e) => this._up(e));
    this.svg.addEventListener("pointercancel", () => this._cancel());
  }

  clear(message) {
    this.data = null;
    this.svg.replaceChildren();
    this.axis.replaceChildren();
    this.summary.textContent = message;
  }

  // `data`: the endpoint's answer; `start`/`end`: the window asked for (Dates).
  render(data, start, end) {
    this.data = { ...data, starts: data.buckets.map((b) => new Date(b.start)), start, end };
    this.redraw();
  }

  redraw() {
    if (!this.data) return;
    const { buckets, bucket_seconds: width, total, starts, start, end } = this.data;
    const n = buckets.length;
    const max = Math.max(1, ...buckets.map((b) => b.count));
    this.svg.setAttribute("viewBox", `0 0 ${n} 100`);
    this.svg.setAttribute(
      "aria-label",
      `Histogram: ${total.toLocaleString()} lines from ${formatTime(start)} to ${formatTime(end)}, ${n} bars`,
    );
    const bars = [];
    buckets.forEach((bucket, i) => {
      const height = (bucket.count / max) * 96;
      const rect = svg("rect", {
        x: String(i + 0.08),
        y: String(100 - height),
        width: "0.84",
        height: String(height),
        class: "bar",
        "data-count": String(bucket.count),
        "data-start": bucket.start,
      });
      const title = svg("title");
      title.textContent = `${formatTime(starts[i])}: ${bucket.count.toLocaleString()} lines`;
      rect.append(title);
      bars.push(rect);
    });
    this.selection = svg("rect", { x: "0", y: "0", width: "0", height: "100", class: "selection" });
    this.svg.replaceChildren(...bars, this.selection);
    const days = end - start > 24 * 3600e3;
    const ticks = [start, new Date((start.getTime() + end.getTime()) / 2), end];
    this.axis.replaceChildren(
      ...ticks.map((t) =>
        Object.assign(document.createElement("span"), { textContent: formatTick(t, days) }),
      ),
    );
    const per =
      width >= 86400
        ? `${width / 86400} d`
        : width >= 3600
          ? `${width / 3600} h`
          : width >= 60
            ? `${width / 60} min`
            : `${width} s`;
    this.summary.textContent = `${total.toLocaleString()} lines; a bar is ${per}. Click a bar or drag across bars to zoom in.`;
  }

  _index(event) {
    const box = this.svg.getBoundingClientRect();
    const n = this.data.buckets.length;
    return Math.min(n - 1, Math.max(0, Math.floor(((event.clientX - box.left) / box.width) * n)));
  }

  _down(event) {
    if (!this.data || event.button !== 0) return;
    this.dragFrom = this._index(event);
    this.svg.setPointerCapture(event.pointerId);
    this._show(this.dragFrom, this.dragFrom);
  }

  _move(event) {
    if (this.dragFrom === null) return;
    this._show(this.dragFrom, this._index(event));
  }

  _up(event) {
    if (this.dragFrom === null) return;
    const a = this.dragFrom;
    const b = this._index(event);
    this._cancel();
    const { starts, bucket_seconds: width, start, end } = this.data;
    const lo = Math.min(a, b);
    const hi = Math.max(a, b);
    // The buckets' own bounds (ISO, UTC): from the first one's start to just before the next
    // bucket's (the API's ts_end is inclusive, to the microsecond), inside the window.
    const from = starts[lo] < start ? start.toISOString() : starts[lo].toISOString();
    const next = starts[hi].getTime() + width * 1000;
    const to =
      next > end.getTime()
        ? end.toISOString()
        : new Date(next - 1).toISOString().replace("Z", "999Z");
    this.onRange(from, to);
  }

  _cancel() {
    this.dragFrom = null;
    this.selection?.setAttribute("width", "0");
  }

  _show(a, b) {
    this.selection.setAttribute("x", String(Math.min(a, b)));
    this.selection.setAttribute("width", String(Math.abs(a - b) + 1));
  }
}
