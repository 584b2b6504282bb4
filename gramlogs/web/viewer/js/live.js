// The live tail (GET /rpc/logs.tail) read with fetch, so the key stays in a header: server-sent
// events parsed from the response body. A dropped stream, or one the server ends, resumes from
// the last id it carried, so no line is missed or shown twice; except a stream ended because
// its key was revoked (reason "revoked"), which stops.

import { ApiError, request, sleep } from "./api.js";

// Events in `text` (complete ones only) and what is left over for the next chunk.
export function parseEvents(text) {
  const events = [];
  const blocks = text.split(/\r\n\r\n|\n\n|\r\r/);
  const rest = blocks.pop();
  for (const block of blocks) {
    const event = { type: "message", data: [], id: null };
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event.type = value;
      else if (field === "data") event.data.push(value);
      else if (field === "id") event.id = value;
    }
    events.push({ ...event, data: event.data.join("\n") });
  }
  return { events, rest };
}

function endReason(data) {
  try {
    return JSON.parse(data).reason ?? null;
  } catch {
    return null;
  }
}

export class LiveTail {
  // onStart(): the stream is open (lines stored from now on will come); onLines(entries): new
  // lines; onGone(): the resume point expired, start again; onRevoked(): the server ended the
  // tail because its key was revoked; onError(error): shown to the user.
  constructor(filters, { onStart, onLines, onGone, onRevoked, onError }) {
    this.filters = filters;
    this.handlers = { onStart, onLines, onGone, onRevoked, onError };
    this.lastId = null;
    this.controller = new AbortController();
    this._run();
  }

  stop() {
    this.controller.abort();
  }

  async _run() {
    const signal = this.controller.signal;
    let started = false;
    while (!signal.aborted) {
      try {
        const extraHeaders = this.lastId ? { "Last-Event-ID": this.lastId } : {};
        const response = await request("/rpc/logs.tail", this.filters, { signal, extraHeaders });
        const ended = await this._read(response, signal, () => {
          if (!started) this.handlers.onStart();
          started = true;
        });
        if (ended === "revoked") {
          this.handlers.onRevoked();
          return;
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof ApiError && error.status === 410) {
          this.handlers.onGone();
          return;
        }
        if (error instanceof ApiError) {
          this.handlers.onError(error);
          return;
        }
        // A dropped connection: resume from the last id after a breath.
        await sleep(1000, signal).catch(() => {});
      }
    }
  }

  async _read(response, signal, opened) {
    const reader = response.body.getReader();
    signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return null;
      buffer += decoder.decode(value, { stream: true });
      const { events, rest } = parseEvents(buffer);
      buffer = rest;
      const lines = [];
      let reason = null;
      for (const event of events) {
        if (event.id) this.lastId = event.id;
        if (event.type === "message" && event.data) lines.push(JSON.parse(event.data));
        if (event.type === "end") reason = endReason(event.data);
      }
      if (events.length) opened();
      if (lines.length) this.handlers.onLines(lines);
      // An `end` event: the server closes the stream; the loop resumes from its id, unless the
      // key was revoked (a resume would only be refused).
      if (reason === "revoked") return reason;
    }
  }
}
