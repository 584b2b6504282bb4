"""Counting a project's lines per time bucket, for ``GET /rpc/logs.histogram``.

Ids are positions in time (core/ids.py), so a bucket of time is an id range, and its count is
a count over one index range: ``(project_id, id)`` without filters, ``(project_id, <column>,
id)`` with an equality filter. Without a keyword that is an index-only scan, which reads no
row once the visibility map says the index's pages are all-visible (autovacuum keeps it so);
a keyword reads every row of the window, as a page's ILIKE does.

One statement counts every bucket: a count per id range, the ranges joined laterally, so that
each range is one index range scan over the partitions it falls in (pruned at run time).
The ranges are contiguous, so their counts add up to the count of the window's whole range:
what a page walk over the same filter and window visits. The statement runs under the
connection's ``statement_timeout``, like every other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

import asyncpg

from gramlogs.storage import codec, sealed
from gramlogs.storage.pages import LogFilter, filter_conditions

__all__ = ["VALUES", "count_ranges", "count_ranges_by", "histogram_query"]


def histogram_query(
    f: LogFilter, edges: Sequence[int], by: str | None = None
) -> tuple[str, list[object], list[int]]:
    """The statement that counts ``f``'s rows in each range that ``edges`` cut ``[f.lo, f.hi]``
    into, its arguments, and which ranges it counts (the others are empty).

    ``edges`` are ascending ids, each the first of a range: the ranges are ``[f.lo, edges[0] -
    1]``, ``[edges[0], edges[1] - 1]``, ..., ``[edges[-1], f.hi]``, each clipped to ``[f.lo,
    f.hi]``. With ``by`` (``level`` or ``source``), a count per range and value of that column
    (rows ``(range, value, count)``), the range read once.
    """
    bounds = [f.lo, *edges, f.hi + 1]
    counted: list[int] = []
    los: list[uuid.UUID] = []
    his: list[uuid.UUID] = []
    for i in range(len(bounds) - 1):
        lo, hi = max(bounds[i], f.lo), min(bounds[i + 1] - 1, f.hi)
        if lo <= hi:
            counted.append(i)
            los.append(uuid.UUID(int=lo))
            his.append(uuid.UUID(int=hi))
    where, values = filter_conditions(f, first_param=3)
    # The rows are counted in id order (a subquery keeps its ORDER BY), although the order
    # changes no count: only (project_id, id) and the filter's (project_id, <column>, id) give
    # it without a sort (pages.PLAN_SETTINGS turns sorts off), so the count is a range scan of
    # one of them whatever the statistics say. Without it, a generic plan made while a
    # partition was empty may count through another index, whose id is not its second column,
    # reading every line the project has in the partition for each bucket.
    if by is None:
        sql = (
            "SELECT r.n, c.n FROM unnest($2::uuid[], $3::uuid[]) WITH ORDINALITY AS r(lo, hi, n)"
            " CROSS JOIN LATERAL (SELECT count(*) AS n FROM (SELECT 1 FROM logs"
            f" WHERE project_id = $1 AND id BETWEEN r.lo AND r.hi{where} ORDER BY id) AS o) AS c"
        )
    else:
        column = _GROUPED[by]
        sql = (
            "SELECT r.n, c.v, c.n FROM unnest($2::uuid[], $3::uuid[]) WITH ORDINALITY"
            f" AS r(lo, hi, n) CROSS JOIN LATERAL (SELECT o.v, count(*) AS n FROM (SELECT"
            f" {column} AS v FROM logs WHERE project_id = $1 AND id BETWEEN r.lo AND r.hi{where}"
            " ORDER BY id) AS o GROUP BY o.v) AS c"
        )
    return sql, [f.project_id, los, his, *values], counted


# The columns a count can be split by, and their values (storage/codec.py's order).
_GROUPED = {"level": "level", "source": "source"}
VALUES = {"level": codec.LEVELS, "source": codec.SOURCES}


async def count_ranges_by(
    conn: asyncpg.Connection, f: LogFilter, edges: Sequence[int], by: str
) -> dict[str, list[int]]:
    """:func:`count_ranges` for each value of the column ``by`` (``level`` or ``source``),
    every range read once: Grafana's log volume, a count per level."""
    values = [v for v in VALUES[by] if f.equals.get(by, v) == v]
    counts = {v: [0] * (len(edges) + 1) for v in values}
    sql, args, counted = histogram_query(f, edges, by)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if counted:
            for n, value, count in await conn.fetch(sql, *args):
                if value in counts:
                    counts[value][counted[n - 1]] = count
        bounds = [f.lo, *(max(f.lo, min(e, f.hi + 1)) for e in edges), f.hi + 1]
        each = [replace(f, equals={**f.equals, by: v}) for v in values]
        for v, sealed_counts in zip(
            values, await sealed.count_in_ranges_each(conn, f, bounds, each), strict=True
        ):
            for i, n in enumerate(sealed_counts):
                counts[v][i] += n
    return counts


async def count_ranges(conn: asyncpg.Connection, f: LogFilter, edges: Sequence[int]) -> list[int]:
    """How many of ``f``'s lines lie in each range of :func:`histogram_query`, in order (one
    more count than there are ``edges``): the rows counted by that statement, the sealed
    lines by their blocks (sealed.count_in_ranges), both in one snapshot."""
    counts = [0] * (len(edges) + 1)
    sql, args, counted = histogram_query(f, edges)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if counted:
            for n, count in await conn.fetch(sql, *args):
                counts[counted[n - 1]] = count
        bounds = [f.lo, *(max(f.lo, min(e, f.hi + 1)) for e in edges), f.hi + 1]
        for i, n in enumerate(await sealed.count_in_ranges(conn, f, bounds)):
            counts[i] += n
    return counts
