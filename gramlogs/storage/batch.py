"""Batches of log rows: the rules both write doors share (``logs.ingest`` and OTLP).

Each entry is checked field by field (an :class:`EntryError` names the field) and becomes a row
in ``pages.COLUMNS`` order, ready for ``writer.store_batch``.

Ids: an entry may carry its own id (a UUIDv7 whose first 64 bits the server would derive from
the entry's timestamp). Otherwise its id is derived, not drawn: the timestamp gives the first 64
bits, and the 62 others are the entry's rank among the batch's entries of the same microsecond
(so that such ties read back in batch order) and a hash of its content (``ids.derived_id_hex``:
14 bits of rank and 48 of hash, or past 16,382 ties an escape, 24 bits of rank and 24 of hash,
so that every identical line of a batch is stored). The same batch sent again therefore maps to
the same ids, and a resend stores nothing twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from gramlogs.core import ids
from gramlogs.core.errors import shorten
from gramlogs.storage.writer import FUNCTION_COLUMN, NewRow

__all__ = [
    "FUNCTION_COLUMN",
    "LEVEL_ALIASES",
    "MAX_LISTED",
    "MAX_MESSAGE_BYTES",
    "MAX_NAME_BYTES",
    "MAX_RAW_LOG_BYTES",
    "SOURCES",
    "BatchBuilder",
    "EntryError",
    "check_text",
    "encode_attributes",
    "function_ids",
    "normalise_level",
]

# containerd's line limit, which PolyAPI documents too: longer lines are refused, not cut.
MAX_RAW_LOG_BYTES = 16_384
MAX_MESSAGE_BYTES = 16_384
# instance is indexed: a btree entry must stay under ~2,700 bytes, so keep it well below.
MAX_NAME_BYTES = 1_024
MAX_LISTED = 20

LEVEL_ALIASES: dict[str, str] = {
    "trace": "debug",
    "debug": "debug",
    "dbg": "debug",
    "info": "info",
    "information": "info",
    "informational": "info",
    "notice": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "err": "error",
    "fatal": "error",
    "critical": "error",
    "crit": "error",
    "panic": "error",
    "alert": "error",
    "emerg": "error",
    "emergency": "error",
}
SOURCES = ("function", "server", "stdout", "stderr")

# Sorted keys: the same attributes hash (and so derive ids) alike whatever order they came in.
_canonical = msgspec.json.Encoder(order="sorted")


class EntryError(ValueError):
    """One entry that cannot be stored: which field, and why."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def normalise_level(value: str) -> str | None:
    """``debug``/``info``/``warn``/``error`` for a level or a common alias (any case), else None."""
    return LEVEL_ALIASES.get(value) or LEVEL_ALIASES.get(value.strip().lower())


def check_text(field: str, value: str, max_bytes: int | None = None) -> str:
    """``value`` if PostgreSQL can store it in a text column within ``max_bytes``."""
    if "\x00" in value:
        raise EntryError(field, "contains a NUL character, which cannot be stored")
    # A str of n code points encodes to at most 4n bytes: most lines skip the encode.
    if max_bytes is not None and len(value) * 4 > max_bytes:
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            raise EntryError(field, f"is {size} bytes long; at most {max_bytes} are allowed")
    return value


def encode_attributes(attributes: dict[str, Any] | None, field: str = "attributes") -> str:
    """Attributes as JSON text for the jsonb column; NUL characters are refused."""
    if not attributes:
        return "{}"
    text = _canonical.encode(attributes)
    # PostgreSQL's jsonb refuses \u0000. The byte pattern can also come from a literal
    # backslash-u0000 in a string, so look closer before refusing.
    if b"\\u0000" in text and _has_nul(attributes):
        raise EntryError(field, "contains a NUL character, which cannot be stored")
    return text.decode("utf-8")


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class BatchBuilder:
    """Rows for one batch of one project, with their ids; see the module docstring."""

    def __init__(self, project_id: uuid.UUID) -> None:
        self.project_id = project_id
        self.rows: list[NewRow] = []
        self._ranks: dict[int, int] = {}
        # asyncpg encodes a uuid given as text in C, but calls UUID.bytes (Python) for a UUID.
        self._project = str(project_id)
        # Texts already checked by uuid(), each to its canonical form; read it directly where a
        # method call per line would cost.
        self.uuids: dict[str, str] = {}

    def uuid(self, field: str, text: str) -> str:
        """``text`` as a canonical (lower-case) uuid, or the EntryError naming ``field``."""
        found = self.uuids.get(text)
        if found is None:
            try:
                found = str(ids.parse_uuid(text))
            except ids.IdError:
                raise EntryError(field, f"must be a uuid; got {shorten(text)!r}") from None
            self.uuids[text] = found
        return found

    def add(
        self,
        timestamp: datetime,
        raw_log: str,
        level: str,
        source: str,
        instance: str,
        message: str | None,
        attributes: str,
        function_id: str,
        deployment_id: str,
        execution_id: str | None,
        # UUID, not uuid.UUID: inside the class, ``uuid`` names the method above.
        log_id: UUID | None = None,
        /,
    ) -> None:
        """Append one checked entry (uuids from :meth:`uuid`); EntryError for an id that does not
        fit its timestamp. Positional: this runs once per line, and keywords cost."""
        try:
            prefix = ids.id_prefix(timestamp)
        except ids.IdError:
            raise EntryError(
                "timestamp",
                f"{timestamp.isoformat()} is outside {ids.MIN_TIMESTAMP.isoformat()}"
                f" .. {ids.MAX_TIMESTAMP.isoformat()}",
            ) from None
        if log_id is None:
            rank = self._ranks.get(prefix, 0)
            self._ranks[prefix] = rank + 1
            content = _canonical.encode(
                (
                    raw_log,
                    message,
                    level,
                    source,
                    instance,
                    function_id,
                    deployment_id,
                    execution_id,
                    attributes,
                )
            )
            digest = hashlib.blake2b(content, digest_size=ids.HASH_BITS // 8).digest()
            row_id = ids.derived_id_hex(prefix, rank, digest)
        elif ids.matches_timestamp(log_id, timestamp):
            row_id = log_id.hex
        else:
            raise EntryError(
                "id",
                f"{log_id} does not match the entry's timestamp {timestamp.isoformat()}: its first"
                f" 64 bits must be {prefix:016x} (see docs/ingestion.md, 'Ids and retries')",
            )
        self.rows.append(
            (
                row_id,
                timestamp,
                instance,
                level,
                source,
                raw_log,
                message,
                attributes,
                self._project,
                deployment_id,
                function_id,
                execution_id,
            )
        )


def function_ids(rows: Sequence[NewRow]) -> set[uuid.UUID]:
    """The distinct functions of a batch."""
    return {uuid.UUID(f) for f in {row[FUNCTION_COLUMN] for row in rows}}
