"""Which lines of one project a read sees: the filter every storage read takes.

Nothing here reads the database; pages.py, histogram.py and sealed.py turn a filter into
statements over the rows and the sealed blocks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

__all__ = ["EQUALITY_FILTERS", "KEYWORD_SEPARATOR", "LogFilter", "like_pattern"]

# Filters matched exactly: by the rows' columns, and by the sealed blocks' postings.
EQUALITY_FILTERS = (
    "function_id",
    "deployment_id",
    "instance",
    "level",
    "source",
    "execution_id",
)

_MAX_ID = (1 << 128) - 1

# A keyword with this character is matched against message and raw_log one by one (see
# pages.py); trigrams.text_of joins the two with it.
KEYWORD_SEPARATOR = "\x01"


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which rows of one project a query sees. ``lo``/``hi`` are inclusive id bounds."""

    project_id: uuid.UUID
    lo: int = 0
    hi: int = _MAX_ID
    equals: dict[str, object] = field(default_factory=dict)
    # Any of these sources (empty: every source). Poly's execution logs leave out `server`.
    sources: tuple[str, ...] = ()
    # Case-insensitive substring of message or raw_log; every character is literal.
    keyword: str | None = None


def like_pattern(keyword: str) -> str:
    """An ILIKE pattern matching ``keyword`` anywhere, its ``%``, ``_`` and ``\\`` taken literally.

    Backslash is PostgreSQL's default LIKE escape, and pg_trgm's LIKE support honours it.
    """
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
