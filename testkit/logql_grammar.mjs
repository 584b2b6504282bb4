// Grafana's own LogQL grammar (@grafana/lezer-logql, the parser of Grafana's Loki query editor)
// as a judge of queries: reads JSON lines, one query string each, on stdin; writes one JSON line
// per query, {"ok": true} or {"ok": false, "error": "<where the first error node is>"}.
// testkit/logql_grammar.py runs it once for a whole list of queries.
import { readFileSync } from "node:fs";
import { parser } from "@grafana/lezer-logql";

function where(text, pos) {
  const before = text.slice(0, pos);
  const line = before.split("\n").length;
  const column = pos - (before.lastIndexOf("\n") + 1) + 1;
  const at = line === 1 ? `column ${column}` : `line ${line}, column ${column}`;
  const near = text.slice(pos, pos + 20);
  return near ? `${at}, near ${JSON.stringify(near)}` : `${at}, at the end`;
}

// Lezer recovers from errors and marks them with error nodes (⚠): a tree with any is not ok.
function judge(query) {
  let error = null;
  parser.parse(query).iterate({
    enter(node) {
      if (error === null && node.type.isError) {
        error = where(query, node.from);
      }
      return error === null;
    },
  });
  return error === null ? { ok: true } : { ok: false, error };
}

const lines = readFileSync(0, "utf8").split("\n");
const out = lines
  .filter((line) => line.trim() !== "")
  .map((line) => JSON.stringify(judge(JSON.parse(line))));
process.stdout.write(out.map((line) => `${line}\n`).join(""));
