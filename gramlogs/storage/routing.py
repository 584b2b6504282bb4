"""Where a page's rows statement runs: as the server sends it, or, on Citus, inside the function
``gramlogs_page_rows`` (migrations/0008), which Citus runs on the worker that holds the page's
project.

On one PostgreSQL the server prepares each page statement once per connection and keeps its
generic plan (pages.PLAN_SETTINGS). Citus cannot route a generic plan of it, so the worker
planned each page's statement for its values, ~1 ms over a shard's time partitions (most of a
page's time there: benchmarks/citus.md). The function is distributed by the project and
colocated with ``logs`` (citus.distribute), so Citus hands a call to that worker whole, where
it runs the same statement on the shard with a plan it keeps.

A connection calls the function only when it is a :class:`RoutedConnection` that
``citus.prepare_connection`` found on a coordinator whose function is distributed; on any other
connection (one PostgreSQL, a cluster not distributed yet, a connection of asyncpg's own class)
pages run their statement themselves, with the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from gramlogs.storage.filters import EQUALITY_FILTERS

if TYPE_CHECKING:
    from gramlogs.storage.pages import PageRequest

__all__ = ["FUNCTION", "RoutedConnection", "call_query", "delegate_pages", "delegates", "page_rows"]

# The function's signature, as create_distributed_function and to_regprocedure name it.
FUNCTION = (
    "gramlogs_page_rows(uuid, uuid, uuid, uuid, uuid, integer, boolean,"
    " uuid, uuid, text, text, text, text, text[])"
)
_CALL = (
    "SELECT * FROM gramlogs_page_rows($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
)


class RoutedConnection(asyncpg.Connection):
    """An asyncpg connection that knows whether it calls the page function (the pools' class)."""

    delegates_pages: bool = False


def delegate_pages(conn: asyncpg.Connection) -> None:
    """Have ``conn`` run pages' rows statements through the function (a RoutedConnection on a
    Citus coordinator whose function is distributed: citus.prepare_connection)."""
    # Not isinstance: asyncpg's connection classes answer it for any connection or proxy.
    if issubclass(type(conn), RoutedConnection):
        conn.delegates_pages = True  # type: ignore[attr-defined]


def delegates(conn: asyncpg.Connection) -> bool:
    """Whether ``conn`` (or the pooled connection it stands for) calls the page function."""
    # A pooled connection is lent as a proxy, which passes attributes on to the connection.
    return bool(getattr(conn, "delegates_pages", False))


def call_query(req: PageRequest, query: tuple[str, list[object]]) -> tuple[str, list[object]]:
    """The function call that returns the rows of ``query`` (pages.page_query of ``req``), and
    its arguments.

    Its first six are those of the page statement (the project, the page's id range, the
    probe's, the limit); then the scan order, and each equality filter or NULL.
    """
    f = req.filter
    filters = [f.equals.get(column) for column in EQUALITY_FILTERS]
    return _CALL, [*query[1][:6], req.scan_ascending, *filters, list(f.sources) or None]


async def page_rows(
    conn: asyncpg.Connection, req: PageRequest, query: tuple[str, list[object]]
) -> list[asyncpg.Record]:
    """The rows of the page statement ``query`` (pages.page_query of ``req``), read where the
    connection reads them best."""
    # A keyword page's statement is its own (pages._keyword_rows); the function has none.
    if delegates(conn) and req.filter.keyword is None:
        sql, args = call_query(req, query)
    else:
        sql, args = query
    rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
    return rows
