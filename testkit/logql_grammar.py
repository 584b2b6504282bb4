"""Grafana's own LogQL grammar as a judge: does Grafana's query editor parse these queries?

@grafana/lezer-logql (Apache-2.0) is the grammar Grafana's Loki data source parses queries with;
testkit/logql_grammar.mjs runs it under Node. It is pinned in package.json, installed into
node_modules by ``make test`` and ``make lint`` (``npm ci``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import msgspec

__all__ = ["GrammarUnavailable", "grafana_parses"]

_ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = _ROOT / "testkit" / "logql_grammar.mjs"
_PACKAGE = _ROOT / "node_modules" / "@grafana" / "lezer-logql"


class GrammarUnavailable(RuntimeError):
    """Node, or the grammar's npm package, is not installed."""


class _Verdict(msgspec.Struct):
    ok: bool
    error: str | None = None


_decode = msgspec.json.Decoder(_Verdict)


def grafana_parses(queries: list[str]) -> list[str | None]:
    """For each query, None when Grafana's grammar parses it whole, else where it fails.

    One Node process for the whole list (about 50 ms to start, then microseconds a query)."""
    node = shutil.which("node")
    if node is None:
        raise GrammarUnavailable(
            "the LogQL grammar check needs Node >= 20 (apt-get install nodejs)"
        )
    if not _PACKAGE.is_dir():
        raise GrammarUnavailable(
            "the LogQL grammar check needs @grafana/lezer-logql: run `npm ci` (make install does)"
        )
    stdin = "".join(json.dumps(query) + "\n" for query in queries)
    done = subprocess.run(
        [node, str(_SCRIPT)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=_ROOT,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{_SCRIPT.name} failed ({done.returncode}): {done.stderr[-2000:]}")
    verdicts = [_decode.decode(line) for line in done.stdout.splitlines()]
    if len(verdicts) != len(queries):
        raise RuntimeError(f"{_SCRIPT.name} judged {len(verdicts)} of {len(queries)} queries")
    return [None if v.ok else (v.error or "not parsed") for v in verdicts]
