"""``POST /rpc/logs.ingest``: JSON and NDJSON batches, stored whole or not at all.

A batch is decoded with msgspec into typed structs in one pass, checked entry by entry
(``batch.BatchBuilder``), and COPYed by ``writer.store_batch`` in one transaction. A bad entry
rejects the batch: the 400 names the first bad entries (at most 20) by index and field. With an
``Idempotency-Key``, a resend is answered from the record and stores nothing
(``storage/idempotency.py``). This module holds the format; the steps around it, the same for
``POST /v1/logs``, are ``intake.accept_batch``'s.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import ids, metrics
from gramlogs.core.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    UnprocessableContent,
    UnsupportedMediaType,
    shorten,
)
from gramlogs.storage.batch import (
    LEVEL_ALIASES,
    MAX_MESSAGE_BYTES,
    MAX_NAME_BYTES,
    MAX_RAW_LOG_BYTES,
    SOURCES,
    BatchBuilder,
    EntryError,
    check_text,
    encode_attributes,
    normalise_level,
)
from gramlogs.storage.idempotency import Reply
from gramlogs.storage.writer import NewRow
from gramlogs.web import intake
from gramlogs.web.counting import more_values_than
from gramlogs.web.endpoint import (  # for the declaration, at the end
    CONTENT_ENCODING,
    GRAM_SECURITY,
    REPLAYED_HEADER,
    Body,
    Endpoint,
    Ok,
    Operation,
)
from gramlogs.web.params import GRAM_KEY, GRAM_PROJECT, IDEMPOTENCY_KEY_HEADER, NO_NUL

__all__ = [
    "ENDPOINT",
    "JSON_TYPES",
    "LEVEL_ALIASES",
    "MAX_ENTRIES",
    "NDJSON_TYPES",
    "SOURCES",
    "check_count",
    "decode_batch",
    "decode_entries",
    "ingest_logs",
]

# GRAMLOGS_MAX_BATCH_ENTRIES' default, which /openapi.json states.
MAX_ENTRIES = 10_000
JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


def _any_case(words: Iterable[str]) -> str:
    """A pattern of ``words`` in any letter case, with blanks around: what batch accepts."""
    alternatives = "|".join(
        "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in w) for w in words
    )
    return f"^\\s*({alternatives})\\s*$"


def _text(description: str, max_bytes: int) -> Meta:
    # Descriptive only (check_text refuses NUL and long text, naming the field): a Meta
    # constraint would validate while decoding, with msgspec's message and in characters.
    return Meta(
        description=description, extra_json_schema={"maxLength": max_bytes, "pattern": NO_NUL}
    )


def _uuid_text(description: str) -> Meta:
    return Meta(description=description, extra_json_schema={"format": "uuid"})


class WireEntry(msgspec.Struct):
    """One log entry of a batch (POST /rpc/logs.ingest). Unknown fields are ignored. No string
    may contain a NUL character (400 naming the field)."""

    # Every Meta here only describes (for /openapi.json); _add_entry and BatchBuilder check.
    raw_log: Annotated[
        str,
        _text(
            f"The line as emitted; at most {MAX_RAW_LOG_BYTES} bytes of UTF-8 (longer lines are "
            "refused, not cut)",
            MAX_RAW_LOG_BYTES,
        ),
    ]
    # uuids as text, checked by BatchBuilder.uuid: a batch names few distinct functions and
    # deployments, so checking each distinct text once beats making a uuid.UUID per entry.
    function_id: Annotated[str, _uuid_text("Function UUID (8-4-4-4-12, any case)")]
    deployment_id: Annotated[str, _uuid_text("Deployment UUID (8-4-4-4-12, any case)")]
    # null means "not given", as absent does.
    timestamp: Annotated[
        str | None,
        Meta(
            description="RFC 3339 with an offset, within 1970-01-01T00:00:00Z .. "
            "2100-01-01T00:00:00Z; digits past the microsecond are dropped. Default: the time "
            "in id when given, else the time the batch arrived",
            extra_json_schema={"format": "date-time"},
        ),
    ] = None
    instance: Annotated[
        str | None,
        _text(
            f"Instance identifier; at most {MAX_NAME_BYTES} bytes. Default empty", MAX_NAME_BYTES
        ),
    ] = None
    level: Annotated[
        str | None,
        Meta(
            description="debug, info, warn or error, in any case, or an alias: "
            + ", ".join(f"{k} ({v})" for k, v in LEVEL_ALIASES.items() if k != v)
            + ". Default info",
            extra_json_schema={"pattern": _any_case(LEVEL_ALIASES)},
        ),
    ] = None
    source: Annotated[
        str | None,
        Meta(
            description=f"One of {', '.join(SOURCES)}, in any case. Default function",
            extra_json_schema={"pattern": _any_case(SOURCES)},
        ),
    ] = None
    message: Annotated[
        str | None,
        _text(f"Parsed log message; at most {MAX_MESSAGE_BYTES} bytes", MAX_MESSAGE_BYTES),
    ] = None
    attributes: Annotated[
        dict[str, Any] | None,
        Meta(
            description="Log attributes, stored as jsonb (key order, spacing and number "
            "spelling are normalised)"
        ),
    ] = None
    execution_id: Annotated[
        str | None,
        _text(f"Execution identifier; at most {MAX_NAME_BYTES} bytes", MAX_NAME_BYTES),
    ] = None
    id: Annotated[
        uuid.UUID | None,
        Meta(
            description="The entry's own id, for idempotent retries: a UUIDv7 whose first 64 "
            "bits are its timestamp to the microsecond (docs/ingestion.md, Ids and retries),"
            " else a 400"
        ),
    ] = None


class _WireBatch(msgspec.Struct):
    logs: list[WireEntry]


class _RawBatch(msgspec.Struct):
    logs: list[msgspec.Raw]


class IngestResult(msgspec.Struct, forbid_unknown_fields=True):
    """The batch is committed: stored rows were new; duplicates had an id that was already
    stored (by an earlier send, or earlier in the batch)"""

    # Only encoded: forbid_unknown_fields and ge=0 check nothing, they say so in /openapi.json.
    stored: Annotated[int, Meta(ge=0)]
    duplicates: Annotated[int, Meta(ge=0)]


_batch_decoder = msgspec.json.Decoder(list[WireEntry] | _WireBatch)
_raw_batch_decoder = msgspec.json.Decoder(list[msgspec.Raw] | _RawBatch)
_entry_decoder = msgspec.json.Decoder(WireEntry)
_encoder = msgspec.json.Encoder()
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
            "timestamp", f"must be an RFC 3339 date-time; got {shorten(text)!r}"
        ) from None


def _level(text: str) -> str:
    found = normalise_level(text)
    if found is None:
        raise EntryError(
            "level",
            f"must be debug, info, warn or error (or an alias such as warning, err, fatal,"
            f" trace), any case; got {shorten(text)!r}",
        )
    return found


def _source(text: str) -> str:
    found = text.strip().lower()
    if found not in SOURCES:
        raise EntryError("source", f"must be one of {', '.join(SOURCES)}; got {shorten(text)!r}")
    return found


def _add_entry(builder: BatchBuilder, e: WireEntry, now: datetime) -> None:
    # This runs once per line and is most of the server's own CPU (benchmarks/ingest.py), so the
    # usual case of each field is tested inline and only the rest goes through a function.
    if e.timestamp is not None:
        ts = _timestamp(e.timestamp)
    else:
        ts = now if e.id is None else _id_time(e.id)
    raw_log = e.raw_log
    if "\x00" in raw_log or len(raw_log) > MAX_RAW_LOG_BYTES // 4:
        check_text("raw_log", raw_log, MAX_RAW_LOG_BYTES)
    known = builder.uuids
    builder.add(
        ts,
        raw_log,
        "info" if e.level is None else (LEVEL_ALIASES.get(e.level) or _level(e.level)),
        "function"
        if e.source is None
        else (e.source if e.source in SOURCES else _source(e.source)),
        "" if e.instance is None else check_text("instance", e.instance, MAX_NAME_BYTES),
        None if e.message is None else check_text("message", e.message, MAX_MESSAGE_BYTES),
        "{}" if not e.attributes else encode_attributes(e.attributes),
        known.get(e.function_id) or builder.uuid("function_id", e.function_id),
        known.get(e.deployment_id) or builder.uuid("deployment_id", e.deployment_id),
        (
            None
            if e.execution_id is None
            else check_text("execution_id", e.execution_id, MAX_NAME_BYTES)
        ),
        e.id,
    )


def _id_time(log_id: uuid.UUID) -> datetime:
    # An entry with an id and no timestamp: the id carries its own time to the microsecond, and
    # "now" could never match it.
    try:
        return ids.timestamp_of(log_id)
    except OverflowError:  # 48 bits of milliseconds reach past the year 9999
        raise EntryError("id", f"{log_id} is not a UUIDv7 of a time before 2100") from None


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


class _Skipped(msgspec.Struct, gc=False):
    """An entry counted, not read: msgspec skips an object's fields without making them."""


class _SkippedBatch(msgspec.Struct):
    logs: list[_Skipped]


_count_decoder = msgspec.json.Decoder(list[_Skipped] | _SkippedBatch)
# Entries have few objects inside (attributes, and what they nest).
_OBJECTS_PER_ENTRY = 16
_FIRST = re.compile(rb"\s*([\[{])")
_NDJSON_LINE = re.compile(rb"^[ \t\r\x0b\x0c]*[^ \t\r\n\x0b\x0c]", re.MULTILINE)


def check_count(body: bytes, kind: str, cap: int) -> None:
    """The 413 for a batch of more than ``cap`` entries, found before any entry is decoded.

    Counting makes nothing per entry but a small object (JSON), or stops at ``cap + 1`` (NDJSON,
    and JSON that is not an array of objects), so a body of millions of tiny entries (``[0,0,…]``
    in a few KB of gzip) is refused before it is built into millions of objects.
    """
    if body.count(b"\n" if kind in NDJSON_TYPES else b",") < cap:
        return  # Fewer separators than the cap: fewer entries too.
    if kind in NDJSON_TYPES:
        over = _more_than(_NDJSON_LINE.finditer(body), cap)
    else:
        over = _json_more_than(body, cap)
    if over:
        raise PayloadTooLarge(f"a batch holds at most {cap} entries; this one has more")


def _more_than(found: Iterable[object], cap: int) -> bool:
    return next(itertools.islice(found, cap, None), None) is not None


def _json_more_than(body: bytes, cap: int) -> bool:
    # More than a few objects per entry: the decode that skips each entry's fields would make
    # one object per entry, so count by scanning (and stop at the cap) instead.
    if body.count(b"{") <= _OBJECTS_PER_ENTRY * cap:
        try:
            decoded = _count_decoder.decode(body)
        except (msgspec.DecodeError, RecursionError):
            pass  # not an array of objects: counted below, and its 400 comes later
        else:
            return len(decoded.logs if isinstance(decoded, _SkippedBatch) else decoded) > cap
    first = _FIRST.match(body)
    return more_values_than(body, b"{[" if first and first[1] == b"{" else b"[", cap)


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


def decode_entries(
    body: bytes, kind: str, cap: int = MAX_ENTRIES
) -> Sequence[WireEntry | EntryError]:
    """The entries of a JSON or NDJSON body, or for each one that does not decode, why.

    413 past ``cap`` entries (counted first), 400 for a body that is not a batch at all.
    """
    check_count(body, kind, cap)
    if kind in NDJSON_TYPES:
        raws = [line for line in body.split(b"\n") if line.strip()]
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
        else:
            entries = decoded.logs if isinstance(decoded, _WireBatch) else decoded
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
    body: bytes,
    kind: str,
    project_id: uuid.UUID,
    now: datetime | None = None,
    cap: int = MAX_ENTRIES,
) -> list[NewRow]:
    """Rows for a JSON or NDJSON batch: all of them, or the 400 that names the bad entries
    (the 413 past ``cap`` entries)."""
    return build_rows(decode_entries(body, kind, cap), project_id, now or datetime.now(UTC))


def build_rows(
    entries: Iterable[WireEntry | EntryError], project_id: uuid.UUID, now: datetime
) -> list[NewRow]:
    """Every entry as a row, or the 400 naming the first MAX_LISTED bad entries."""
    builder = BatchBuilder(project_id)
    problems = intake.Problems()
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
        problems.add(_entry_error(index, problem.field, problem.reason))
    if problems.count:
        metrics.rejected("invalid", problems.count)
        total = problems.count
        raise BadRequest(
            f"nothing was stored: {total} invalid {'entry' if total == 1 else 'entries'}"
            f"{problems.shown}: " + "; ".join(problems.listed)
        )
    return builder.rows


def _decode(body: bytes, kind: str, project_id: uuid.UUID, cap: int) -> intake.Decoded:
    return intake.Decoded(decode_batch(body, kind, project_id, cap=cap))


def _refuse(decoded: intake.Decoded, disabled: set[uuid.UUID]) -> NoReturn:
    # A batch is stored whole or not at all, so an entry of a disabled function refuses it.
    metrics.rejected("disabled", len(decoded.rows))
    off = intake.entries_of(decoded.rows, disabled)
    functions = intake.listed(sorted(disabled))
    raise Conflict(
        f"nothing was stored: logs are disabled for function {functions} in this project;"
        f" entries {intake.listed(off)}{intake.first_shown(len(off))} belong to it"
    )


def _result(kind: str, decoded: intake.Decoded, stored: int, duplicates: int) -> Reply:
    body = _encoder.encode(IngestResult(stored=stored, duplicates=duplicates))
    return Reply(200, "application/json", body)


_DOOR = intake.Door(JSON_TYPES + NDJSON_TYPES, _decode, _refuse, _result)


async def ingest_logs(request: Request) -> Response:
    """``POST /rpc/logs.ingest``: store a JSON or NDJSON batch whole, or nothing."""
    return await intake.accept_batch(request, _DOOR)


# -- The declaration (web/endpoint.py) ----------------------------------------------------------

_ENTRIES = {
    "type": "array",
    "maxItems": MAX_ENTRIES,
    "description": f"At most GRAMLOGS_MAX_BATCH_ENTRIES (default {MAX_ENTRIES}) entries,"
    " counted before any is decoded (413 payload_too_large beyond)",
    "items": WireEntry,
}
_NDJSON = {
    **_ENTRIES,
    "description": "NDJSON: one entry (a JSON object) per line; blank lines are skipped and "
    f"\\r\\n is fine. At most GRAMLOGS_MAX_BATCH_ENTRIES (default {MAX_ENTRIES}) entries, "
    "counted before any is decoded (413 beyond)",
}
ENDPOINT = Endpoint(
    "/rpc/logs.ingest",
    ingest_logs,
    (
        Operation(
            "POST",
            "ingestLogs",
            "ingest",
            "ingest logs",
            "Store a batch of log entries whole, or nothing: one bad entry rejects the batch "
            "(the 400 names the first 20 by index and field). A key that may write (scope "
            "ingest, admin or producer). Order of checks: headers (401), Idempotency-Key "
            "(400), content type and encoding (415), key (401/403), body size (413), bodies in "
            "flight (503), entries (413), body (400), a recorded Idempotency-Key (its reply "
            "again, or 422), functions whose logs are disabled (409)." + CONTENT_ENCODING,
            Ok(
                "The batch is committed (durable).",
                {"application/json": IngestResult},
                REPLAYED_HEADER,
            ),
            (GRAM_KEY, GRAM_PROJECT, IDEMPOTENCY_KEY_HEADER),
            raises=(Conflict, PayloadTooLarge, UnsupportedMediaType, UnprocessableContent),
            security=GRAM_SECURITY,
            body=Body(
                {
                    "application/json": {
                        "oneOf": [
                            _ENTRIES,
                            {
                                "type": "object",
                                "properties": {"logs": _ENTRIES},
                                "required": ["logs"],
                            },
                        ]
                    },
                    **{kind: _NDJSON for kind in NDJSON_TYPES},
                },
                'A JSON array of entries or an object {"logs": [...]}, or NDJSON. UTF-8 only '
                "(another charset is a 415).",
            ),
        ),
    ),
)
