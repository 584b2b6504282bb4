"""wrk, the HTTP load generator, cycling through a list of GET paths: requests/s and latency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from testkit.ports import HOST

__all__ = ["run_wrk"]

_SCRIPT = """
local paths = {%(paths)s}
local i = 0
wrk.headers["Gram-Key"] = "%(key)s"
wrk.headers["Gram-Project"] = "%(project)s"
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %%d, \\"seconds\\": %%.3f, \\"errors\\": %%d,"
    .. " \\"non2xx\\": %%d, \\"p50_ms\\": %%.3f, \\"p99_ms\\": %%.3f}\\n",
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def run_wrk(
    wrk: str,
    port: int,
    paths: list[str],
    key: str,
    project: str,
    *,
    connections: int,
    seconds: float,
) -> dict[str, Any]:
    """Requests/s and latency from wrk, cycling through ``paths``; errors and non-2xx counted."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            _SCRIPT
            % {"paths": ", ".join(json.dumps(p) for p in paths), "key": key, "project": project}
        )
    try:
        threads = max(1, min(2, connections))
        done = subprocess.run(
            [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", f.name,
             f"http://{HOST}:{port}"],
            capture_output=True, text=True, check=False, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        os.unlink(f.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("JSON ")), None)
    if done.returncode or line is None:
        # Reported, not fatal: one failed load run must not lose the rest of a long suite.
        detail = (done.stderr or done.stdout).strip()[-300:]
        print(f"wrk failed (exit {done.returncode}): {detail}", file=sys.stderr, flush=True)
        return {"requests": 0, "seconds": 0, "errors": -1, "non2xx": 0, "p50_ms": float("nan"),
                "p99_ms": float("nan"), "rps": 0.0, "failed": detail}  # fmt: skip
    result: dict[str, Any] = json.loads(line[5:])
    result["rps"] = result["requests"] / result["seconds"]
    return result
