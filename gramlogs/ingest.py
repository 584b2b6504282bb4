"""Ingestion: ``POST /rpc/logs.ingest`` and the batch rules both write endpoints share.

A batch is decoded with msgspec into typed structs, checked entry by entry, and turned into rows
in ``store.COLUMNS`` order; ``writer.store_batch`` then COPYs it in one transaction. Either every
entry is stored or none is: the first bad entries (at most 20) are named in one 400.

Ids: an entry may carry its own id (a UUIDv7 whose first 64 bits the server would derive from
the entry's timestamp). Otherwise its id is derived, not drawn: the timestamp gives the first 64
bits, and the 62 others are the entry's rank among the batch's entries of the same microsecond
(14 bits, so that such ties read back in batch order) and a hash of its content (48 bits). The
same batch sent again therefore maps to the same ids, and a resend stores nothing twice.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gramlogs import ids
from gramlogs.auth import Scope, authenticate, bearer
from gramlogs.body import media_type, read_body
from gramlogs.errors import BadRequest, Conflict, PayloadTooLarge, Unauthorized
from gramlogs.functions import disabled_among
from gramlogs.state import app_state
from gramlogs.store import COLUMNS
from gramlogs.writer import Row, store_batch

__all__ = [
    "MAX_ENTRIES",
    "MAX_RAW_LOG_BYTES",
    "BatchBuilder",
    "EntryError",
    "decode_batch",
    "ingest_logs",
    "normalise_level",
]

MAX_ENTRIES = 10_000
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

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


class WireEntry(msgspec.Struct):
    """One log entry as a client sends it; unknown fields are ignored."""

    raw_log: str
    # uuids as text, checked by BatchBuilder.uuid: a batch names few distinct functions and
    # deployments, so checking each distinct text once beats making a uuid.UUID per entry.
    function_id: str
    deployment_id: str
    timestamp: str | None = None
    instance: str | None = None
    level: str | None = None
    source: str | None = None
    message: str | None = None
    attributes: dict[str, Any] | None = None
    execution_id: str | None = None
    id: uuid.UUID | None = None


class _WireBatch(msgspec.Struct):
    logs: list[WireEntry]


class _RawBatch(msgspec.Struct):
    logs: list[msgspec.Raw]


class IngestResult(msgspec.Struct):
    stored: int
    duplicates: int


_batch_decoder = msgspec.json.Decoder(list[WireEntry] | _WireBatch)
_raw_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw] | _RawBatch)
_entry_decoder = msgspec.json.Decoder(WireEntry)
_encoder = msgspec.json.Encoder()
# Sorted keys: the same attributes hash (and so derive ids) alike whatever order they came in.
_canonical = msgspec.json.Encoder(order="sorted")

_FUNCTION = COLUMNS.index("function_id")
_RANK_BITS = 14
_HASH_BITS = 62 - _RANK_BITS
_MAX_RANK = (1 << _RANK_BITS) - 1


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
        self.rows: list[Row] = []
        self._ranks: dict[int, int] = {}
        # asyncpg encodes a uuid given as text in C, but calls UUID.bytes (Python) for a UUID.
        self._project = str(project_id)
        self._uuids: dict[str, str] = {}

    def uuid(self, field: str, text: str) -> str:
        """``text`` as a canonical (lower-case) uuid, or the EntryError naming ``field``."""
        found = self._uuids.get(text)
        if found is None:
            try:
                found = str(ids.parse_uuid(text))
            except ids.IdError:
                raise EntryError(field, f"must be a uuid; got {_short(text)}") from None
            self._uuids[text] = found
        return found

    def add(
        self,
        *,
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
        log_id: uuid.UUID | None = None,
    ) -> None:
        """Append one checked entry (uuids from :meth:`uuid`); EntryError for an id that does not
        fit its timestamp."""
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
            digest = hashlib.blake2b(content, digest_size=_HASH_BITS // 8).hexdigest()
            # Low 64 bits: variant 0b10, the 14-bit rank, the 48-bit hash; as 32 hex digits,
            # which asyncpg encodes in C (a uuid.UUID costs more than the rest of the row).
            row_id: uuid.UUID | str = f"{prefix:016x}{0x8000 | min(rank, _MAX_RANK):04x}{digest}"
        elif ids.matches_timestamp(log_id, timestamp):
            row_id = log_id
        else:
            raise EntryError(
                "id",
                f"{log_id} does not match the entry's timestamp {timestamp.isoformat()}: its first"
                f" 64 bits must be {prefix:016x} (see the README, Ingestion)",
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


# The usual shape of an RFC 3339 time, which datetime.fromisoformat (C, ~30 times faster than
# ids.parse_rfc3339) reads the same way, truncating past the microsecond. Anything else (a
# lower-case 't' or 'z', a leap second) takes the slow, general path.
_USUAL_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)\Z", re.ASCII
)


def _timestamp(text: str) -> datetime:
    if _USUAL_RFC3339.match(text):
        try:
            ts = datetime.fromisoformat(text)
            return ts if ts.tzinfo is UTC else ts.astimezone(UTC)
        except (ValueError, OverflowError):  # e.g. month 13, second 60, year 9999 at -01:00
            pass
    try:
        return ids.parse_rfc3339(text)
    except ids.IdError:
        raise EntryError(
            "timestamp", f"must be an RFC 3339 date-time; got {_short(text)}"
        ) from None


def _add_entry(builder: BatchBuilder, e: WireEntry, now: datetime) -> None:
    if e.timestamp is not None:
        ts = _timestamp(e.timestamp)
    elif e.id is not None:
        # The id carries its own time to the microsecond; "now" could never match it.
        try:
            ts = ids.timestamp_of(e.id)
        except OverflowError:  # 48 bits of milliseconds reach past the year 9999
            raise EntryError("id", f"{e.id} is not a UUIDv7 of a time before 2100") from None
    else:
        ts = now
    level = "info"
    if e.level is not None:
        found = normalise_level(e.level)
        if found is None:
            raise EntryError(
                "level",
                f"must be debug, info, warn or error (or an alias such as warning, err, fatal,"
                f" trace), any case; got {_short(e.level)}",
            )
        level = found
    source = "function"
    if e.source is not None:
        source = e.source.strip().lower()
        if source not in SOURCES:
            raise EntryError(
                "source", f"must be one of {', '.join(SOURCES)}; got {_short(e.source)}"
            )
    builder.add(
        timestamp=ts,
        raw_log=check_text("raw_log", e.raw_log, MAX_RAW_LOG_BYTES),
        level=level,
        source=source,
        instance="" if e.instance is None else check_text("instance", e.instance, MAX_NAME_BYTES),
        message=None if e.message is None else check_text("message", e.message, MAX_MESSAGE_BYTES),
        attributes=encode_attributes(e.attributes),
        function_id=builder.uuid("function_id", e.function_id),
        deployment_id=builder.uuid("deployment_id", e.deployment_id),
        execution_id=(
            None
            if e.execution_id is None
            else check_text("execution_id", e.execution_id, MAX_NAME_BYTES)
        ),
        log_id=e.id,
    )


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _entry_error(index: int, field: str | None, reason: str) -> str:
    return f"entries[{index}]{'.' + field if field else ''}: {reason}"


_MISSING_RE = re.compile(r"Object missing required field `(\w+)`")


def _too_deep() -> EntryError:
    # msgspec recurses with Python's stack: about a thousand levels of nesting stop it.
    return EntryError(None, "is nested too deeply")


def _decode_problem(exc: msgspec.DecodeError) -> EntryError:
    # msgspec says "Expected `str`, got `int` - at `$.raw_log`": keep the reason, name the field.
    text = str(exc)
    reason, sep, path = text.rpartition(" - at `$")
    if not sep or not path.endswith("`"):
        reason, path = text, ""
    path = path[:-1].lstrip(".")
    if not path and (m := _MISSING_RE.fullmatch(reason)):
        return EntryError(m.group(1), "is required")
    return EntryError(path or None, reason)


def _reject(problems: list[str], total: int) -> BadRequest:
    more = f" (first {MAX_LISTED} shown)" if total > MAX_LISTED else ""
    return BadRequest(
        f"nothing was stored: {total} invalid {'entry' if total == 1 else 'entries'}{more}: "
        + "; ".join(problems)
    )


def _check_count(count: int) -> None:
    if count > MAX_ENTRIES:
        raise PayloadTooLarge(f"a batch holds at most {MAX_ENTRIES} entries; this one has {count}")


def _raw_entries(body: bytes) -> list[bytes]:
    """The entries of a JSON body, each undecoded, or the 400 for a body of the wrong shape."""
    try:
        batch = _raw_batch_decoder.decode(body)
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except msgspec.ValidationError:  # a subclass of DecodeError: test it first
        raise BadRequest(
            'the body must be a JSON array of log entries or an object {"logs": [...]};'
            " for one entry per line, send Content-Type: application/x-ndjson"
        ) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(
            f"the body is not valid JSON ({exc}); for one entry per line, send"
            " Content-Type: application/x-ndjson"
        ) from None
    return [bytes(r) for r in (batch.logs if isinstance(batch, _RawBatch) else batch)]


def decode_entries(body: bytes, kind: str) -> list[WireEntry | EntryError]:
    """The entries of a JSON or NDJSON body, or for each one that does not decode, why.

    400 for a body that is not a batch at all, 413 past MAX_ENTRIES.
    """
    if kind in NDJSON_TYPES:
        raws = [line for line in body.split(b"\n") if line.strip()]
        _check_count(len(raws))
        try:
            entries = _entry_decoder.decode_lines(body)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            # decode_lines reads any whitespace-separated values; one per line is the format.
            if len(entries) == len(raws):
                return entries
    else:
        try:
            decoded = _batch_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            raws = _raw_entries(body)
            _check_count(len(raws))
        else:
            entries = decoded.logs if isinstance(decoded, _WireBatch) else decoded
            _check_count(len(entries))
            return list(entries)
    # The one-pass decode failed: decode entry by entry to name each bad one.
    found: list[WireEntry | EntryError] = []
    for raw in raws:
        try:
            found.append(_entry_decoder.decode(raw))
        except msgspec.DecodeError as exc:
            found.append(_decode_problem(exc))
        except RecursionError:
            found.append(_too_deep())
    return found


def decode_batch(
    body: bytes, kind: str, project_id: uuid.UUID, now: datetime | None = None
) -> list[Row]:
    """Rows for a JSON or NDJSON batch: all of them, or the 400 that names the bad entries."""
    return build_rows(decode_entries(body, kind), project_id, now or datetime.now(UTC))


def build_rows(
    entries: Iterable[WireEntry | EntryError], project_id: uuid.UUID, now: datetime
) -> list[Row]:
    """Every entry as a row, or the 400 naming the first MAX_LISTED bad entries."""
    builder = BatchBuilder(project_id)
    problems: list[str] = []
    bad = 0
    for index, entry in enumerate(entries):
        if isinstance(entry, EntryError):
            problem = entry
        else:
            try:
                _add_entry(builder, entry, now)
                continue
            except EntryError as exc:
                problem = exc
            except RecursionError:
                problem = _too_deep()
        bad += 1
        if len(problems) < MAX_LISTED:
            problems.append(_entry_error(index, problem.field, problem.reason))
    if bad:
        raise _reject(problems, bad)
    return builder.rows


def function_ids(rows: Sequence[Row]) -> set[uuid.UUID]:
    """The distinct functions of a batch."""
    return {uuid.UUID(str(f)) for f in {row[_FUNCTION] for row in rows}}


def refuse_disabled(rows: Sequence[Row], disabled: set[uuid.UUID]) -> Conflict:
    """The 409 for a batch with entries of functions whose logs are turned off."""
    off = {str(f) for f in disabled}
    indexes = [i for i, row in enumerate(rows) if str(row[_FUNCTION]) in off]
    shown = ", ".join(str(i) for i in indexes[:MAX_LISTED])
    more = f" (first {MAX_LISTED} shown)" if len(indexes) > MAX_LISTED else ""
    functions = ", ".join(str(f) for f in sorted(disabled)[:MAX_LISTED])
    return Conflict(
        f"nothing was stored: logs are disabled for function {functions} in this project;"
        f" entries {shown}{more} belong to it"
    )


def gram_credentials(request: Request, *, allow_authorization: bool = False) -> tuple[str, str]:
    """The key and project slug of a write request; 401 when either is missing."""
    key = bearer(request.headers.get("gram-key"))
    if key is None and allow_authorization:
        key = bearer(request.headers.get("authorization"))
    if key is None:
        raise Unauthorized("missing Gram-Key header")
    slug = request.headers.get("gram-project", "").strip()
    if not slug:
        raise Unauthorized("missing Gram-Project header")
    return key, slug


async def ingest_logs(request: Request) -> Response:
    """``POST /rpc/logs.ingest``: store a JSON or NDJSON batch whole, or nothing."""
    key, slug = gram_credentials(request)
    kind = media_type(request, JSON_TYPES + NDJSON_TYPES)
    state = app_state(request)
    # The body is read before a pooled connection is taken (a slow upload must not hold one)
    # but parsed only once the key is known good. One connection per request: each release
    # costs asyncpg's reset round trip.
    body = await read_body(request, state.config.max_body_bytes)
    async with state.db.connection() as conn:
        principal = await authenticate(conn, key, Scope.PRODUCER, project_slug=slug)
        rows = decode_batch(body, kind, principal.project_id)
        disabled = await disabled_among(conn, principal.project_id, function_ids(rows))
        if disabled:
            raise refuse_disabled(rows, disabled)
        stored, duplicates = await store_batch(conn, principal.project_id, rows)
    return _json_response(IngestResult(stored=stored, duplicates=duplicates))


def _json_response(value: msgspec.Struct) -> Response:
    return Response(_encoder.encode(value), media_type="application/json")
