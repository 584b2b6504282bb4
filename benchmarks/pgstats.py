"""The database's work in a window, from its statistics views: statements per second from
pg_stat_statements (where it is loaded: ``testkit.datasets.counting_database``), transactions
from pg_stat_database, scans of the live tails' tables from pg_stat_user_tables."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["Counters", "counters", "rates", "statement_table"]

_TABLES = """
SELECT relname, seq_scan, coalesce(idx_scan, 0) AS idx_scan FROM pg_stat_user_tables
WHERE relname IN ('tail_journal', 'tail_heads')
"""
# This connection's own statements all name pg_stat: left out.
_STATEMENTS = """
SELECT queryid, query, calls FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT ILIKE '%pg_stat%'
"""


@dataclass
class Counters:
    at: float
    xact_commit: int
    scans: dict[str, int]
    statements: dict[int, tuple[str, int]] | None


async def counters(admin: asyncpg.Connection, statements: bool) -> Counters:
    xact = await admin.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )
    scans = {}
    for row in await admin.fetch(_TABLES):
        scans[f"{row['relname']}.seq_scan"] = row["seq_scan"]
        scans[f"{row['relname']}.idx_scan"] = row["idx_scan"]
    found = None
    if statements:
        found = {r["queryid"]: (r["query"], r["calls"]) for r in await admin.fetch(_STATEMENTS)}
    return Counters(time.monotonic(), xact, scans, found)


def is_tail_read(query: str) -> bool:
    q = query.lstrip().upper()
    return q.startswith("SELECT") and ("TAIL_JOURNAL" in q or "TAIL_HEADS" in q)


def rates(a: Counters, b: Counters) -> dict[str, Any]:
    seconds = b.at - a.at
    out: dict[str, Any] = {
        "seconds": round(seconds, 2),
        "xact_per_s": (b.xact_commit - a.xact_commit) / seconds,
    }
    for key, scans in (("journal_idx", "tail_journal.idx_scan"),
                       ("journal_seq", "tail_journal.seq_scan"),
                       ("heads_idx", "tail_heads.idx_scan")):  # fmt: skip
        out[f"{key}_scans_per_s"] = (b.scans.get(scans, 0) - a.scans.get(scans, 0)) / seconds
    if a.statements is not None and b.statements is not None:
        calls = []
        for queryid, (query, n) in b.statements.items():
            delta = n - a.statements.get(queryid, ("", 0))[1]
            if delta:
                calls.append((delta, " ".join(query.split())))
        # The tail's reads first, then the most called.
        calls.sort(key=lambda c: (not is_tail_read(c[1]), -c[0], c[1]))
        out["statements_per_s"] = sum(n for n, _ in calls) / seconds
        out["tail_reads_per_s"] = sum(n for n, q in calls if is_tail_read(q)) / seconds
        out["statements"] = [
            {"per_s": round(n / seconds, 2), "tail_read": is_tail_read(q), "query": q[:120]}
            for n, q in calls[:20]
        ]
    return out


def statement_table(configs: list[dict[str, Any]]) -> list[str]:
    """A row per statement (the tail's reads first), a column per configuration."""
    rows: dict[str, dict[str, float]] = {}
    reads: set[str] = set()
    for c in configs:
        for st in c["queries"]["statements"]:
            rows.setdefault(st["query"], {})[c["label"]] = st["per_s"]
            if st["tail_read"]:
                reads.add(st["query"])
    order = sorted(rows, key=lambda q: (q not in reads, -max(rows[q].values()), q))
    out = [
        "| statement | tail read | " + " | ".join(c["label"] for c in configs) + " |",
        "|---|---|" + "---|" * len(configs),
    ]
    for q in order:
        cells = [f"{rows[q].get(c['label'], 0.0):.1f}" for c in configs]
        text = q[:90].replace("|", "\\|") + ("…" if len(q) > 90 else "")
        out.append(f"| `{text}` | {'yes' if q in reads else ''} | " + " | ".join(cells) + " |")
    return out
