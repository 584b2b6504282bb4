// Ships given lines to a Loki push URL with winston-loki (a real Loki client nobody here wrote),
// then exits once they are sent: tests/test_loki_shippers.py runs it against a real server.
//
// stdin: {"host": "http://127.0.0.1:PORT", "user": slug, "password": key,
//         "labels": {...}, "json": false, "lines": [{"level", "message", "timestamp"}]}
// winston-loki sends protobuf + snappy unless "json" is true. Exit 1 when a send fails.

const winston = require("winston");
const LokiTransport = require("winston-loki");

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const spec = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  let failed = null;
  const transport = new LokiTransport({
    host: spec.host,
    basicAuth: `${spec.user}:${spec.password}`,
    labels: spec.labels,
    json: Boolean(spec.json),
    // One batch, sent by close(): the loop's first send finds it empty, then waits an hour.
    batching: true,
    interval: 3600,
    replaceTimestamp: false,
    gracefulShutdown: false,
    // The line as logged, without winston-loki's default of appending the metadata as JSON.
    format: winston.format.printf((info) => info.message),
    onConnectionError: (err) => {
      failed = err;
    },
  });
  const logger = winston.createLogger({ level: "debug", transports: [transport] });
  for (const line of spec.lines) {
    logger.log({ level: line.level, message: line.message, timestamp: line.timestamp });
  }
  // winston hands entries to the transport asynchronously: let it drain first.
  await new Promise((resolve) => setImmediate(resolve));
  await transport.close();
  if (failed !== null) {
    process.stderr.write(`winston-loki: ${failed.message}\n`);
    process.exit(1);
  }
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`${err.stack}\n`);
  process.exit(2);
});
