"""A stored line as every read returns it: the columns of ``logs`` in one order.

A row read from ``logs`` (an asyncpg Record) and a line decoded from a sealed block
(codec.SealedRow) both hold these, in this order, and answer ``row["name"]`` alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["COLUMNS", "COLUMN_LIST", "StoredRow"]

COLUMNS = (
    "id",
    "timestamp",
    "instance",
    "level",
    "source",
    "raw_log",
    "message",
    "attributes",
    "project_id",
    "deployment_id",
    "function_id",
    "execution_id",
)


# COLUMNS as a statement's select list.
COLUMN_LIST = ", ".join('"timestamp"' if c == "timestamp" else c for c in COLUMNS)


class StoredRow(Protocol):
    """A row in COLUMNS order, as asyncpg reads it (a Record) or as a tuple."""

    def __getitem__(self, index: int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...
