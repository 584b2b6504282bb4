// Export: the current filter's lines as NDJSON, streamed from GET /rpc/logs.export (with the key
// in a header, so not a plain link), counted as they come, then saved as a file.

import { request } from "./api.js";

export const EXPORT_LIMIT = 10000;

function filenameOf(response) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="?([^";]+)"?/.exec(disposition);
  return match ? match[1] : "gramlogs.ndjson";
}

// Resolves to {lines, limit, capped, filename} once the file is handed to the browser.
export async function exportLines(params, { signal, onProgress }) {
  const response = await request(
    "/rpc/logs.export",
    { ...params, limit: EXPORT_LIMIT },
    { signal },
  );
  const limit = Number(response.headers.get("Gramlogs-Export-Limit")) || EXPORT_LIMIT;
  const reader = response.body.getReader();
  const parts = [];
  let lines = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    for (const byte of value) if (byte === 10) lines += 1;
    onProgress(lines, limit);
  }
  const filename = filenameOf(response);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob(parts, { type: "application/x-ndjson" }));
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  return { lines, limit, capped: lines >= limit, filename };
}
