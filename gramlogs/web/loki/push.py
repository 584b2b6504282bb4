"""Loki's push API, ``POST /loki/api/v1/push``, so that Promtail, Grafana Alloy, Vector, Fluent
Bit, winston-loki and python-logging-loki ship here unchanged.

Two bodies, as Loki takes them:

- ``application/x-protobuf``: a snappy-compressed ``logproto.PushRequest`` (logproto.py);
- ``application/json``, maybe with ``Content-Encoding: gzip``:
  ``{"streams": [{"stream": {"app": "web"}, "values": [["<unix ns>", "line"],
  ["<unix ns>", "line", {"trace_id": "…"}]]}]}``.

Each stream's labels become a row's columns and pushed labels (streams.py, and docs/ingestion.md
"POST /loki/api/v1/push"). A push is stored whole or not at all, as ``logs.ingest``'s batches:
any bad entry or stream refuses it with a 400 naming the first ones (``streams[1].values[3]:
timestamp: is required``). Entries of functions whose logs are turned off are left out, the
others stored: a shipper's batch holds many services, and Loki's clients drop a batch refused
with a 4xx. The answer is a 204 with no body. Ids are derived from the content, so a resend of
the same lines with the same timestamps stores nothing new. The key comes as Loki's clients send
it (auth.py); the steps around the format are ``intake.accept_batch``'s.
"""

from __future__ import annotations

import functools
import uuid

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import metrics
from gramlogs.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from gramlogs.storage.batch import BatchBuilder, EntryError
from gramlogs.storage.idempotency import Reply
from gramlogs.storage.writer import NewRow
from gramlogs.web import intake
from gramlogs.web.counting import more_values_than
from gramlogs.web.endpoint import (  # for the declaration, at the end
    BASIC,
    BEARER,
    CONTENT_ENCODING,
    GRAM_KEY_SCHEME,
    ORG_ID_SCHEME,
    PROJECT_SCHEME,
    Body,
    Endpoint,
    Ok,
    Operation,
)
from gramlogs.web.loki.auth import loki_credentials
from gramlogs.web.loki.logproto import (
    Entry,
    PushedStream,
    decode_push_request,
    snappy_inflate,
)
from gramlogs.web.loki.streams import add_entry, stream_columns
from gramlogs.web.state import app_state

__all__ = ["ENDPOINT", "JSON", "PROTOBUF", "decode_json", "map_streams", "push"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MEDIA_TYPES = (PROTOBUF, JSON)


class _JsonStream(msgspec.Struct):
    stream: dict[str, str] = {}
    # [ns, line] or [ns, line, {structured metadata}]: checked in decode_json.
    values: list[list[str | dict[str, str]]] = []


class _JsonPush(msgspec.Struct):
    streams: list[_JsonStream]


_json_decoder = msgspec.json.Decoder(_JsonPush)
# Where entries sit: {"streams": [{"values": [ here ]}]}.
_ENTRIES_IN_JSON = b"{[{["


def _json_entry(value: list[str | dict[str, str]]) -> Entry | str:
    """An entry of a JSON stream, or why it is not one."""
    if len(value) not in (2, 3):
        return "must be [timestamp, line] or [timestamp, line, {structured metadata}]"
    ts, line, *rest = value
    # 20 digits hold any uint64 (Python refuses to read numbers of over 4,300 digits).
    if not isinstance(ts, str) or not ts.isascii() or not ts.isdigit() or len(ts) > 20:
        return "timestamp: must be a string of Unix epoch nanoseconds"
    if not isinstance(line, str):
        return "line: must be a string"
    metadata = rest[0] if rest else {}
    if not isinstance(metadata, dict):
        return "structured metadata: must be an object of strings"
    return int(ts), line, metadata


def decode_json(body: bytes, cap: int) -> list[PushedStream]:
    """The streams of a JSON push; 400 for a body that is not a push, 413 past ``cap`` entries
    (counted before they are decoded)."""
    if body.count(b"[") > cap and more_values_than(body, _ENTRIES_IN_JSON, cap):
        raise PayloadTooLarge(f"a push holds at most {cap} entries; this one has more")
    try:
        push = _json_decoder.decode(body)
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise BadRequest(f"the body is not a Loki push request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    streams: list[PushedStream] = []
    for i, raw in enumerate(push.streams):
        stream = PushedStream(f"streams[{i}]", raw.stream)
        if not raw.stream:
            stream.problem = f"streams[{i}].stream: a stream needs at least one label"
        stream.entries = [_json_entry(value) for value in raw.values]
        streams.append(stream)
    return streams


def map_streams(
    streams: list[PushedStream],
    project_id: uuid.UUID,
    entries: str = "entries",
) -> list[NewRow]:
    """The rows of a push, or the 400 naming its first bad streams and entries (nothing of a
    push with one is stored). ``entries``: what the format calls a stream's entries."""
    found = intake.Problems()
    builder = BatchBuilder(project_id)
    for stream in streams:
        if stream.problem is not None:
            found.add(stream.problem)
            continue
        try:
            columns = stream_columns(builder, stream.labels)
        except EntryError as exc:
            found.add(f"{stream.where}.{exc.field}: {exc.reason}")
            continue
        for j, entry in enumerate(stream.entries):
            if isinstance(entry, str):
                found.add(f"{stream.where}.{entries}[{j}]: {entry}")
                continue
            try:
                add_entry(builder, columns, entry)
            except EntryError as exc:
                found.add(f"{stream.where}.{entries}[{j}].{exc.field}: {exc.reason}")
    if found.count:
        metrics.rejected("invalid", found.count)
        raise BadRequest(
            f"nothing was stored: {found.count} invalid"
            f" {'entry or stream' if found.count == 1 else 'entries or streams'}"
            f"{found.shown}: " + "; ".join(found.listed)
        )
    return builder.rows


def _decode(limit: int, body: bytes, kind: str, project_id: uuid.UUID, cap: int) -> intake.Decoded:
    # For the body threads: inflated, decoded, counted and mapped.
    if kind == PROTOBUF:
        streams = decode_push_request(snappy_inflate(body, limit), cap)
        return intake.Decoded(map_streams(streams, project_id))
    return intake.Decoded(map_streams(decode_json(body, cap), project_id, "values"))


def _leave_out(decoded: intake.Decoded, disabled: set[uuid.UUID]) -> intake.Decoded:
    off = set(intake.entries_of(decoded.rows, disabled))
    metrics.rejected("disabled", len(off))
    return intake.Decoded([row for i, row in enumerate(decoded.rows) if i not in off], len(off))


def _reply(kind: str, decoded: intake.Decoded, stored: int, duplicates: int) -> Reply:
    return Reply(204, "text/plain", b"")


@functools.cache
def _door(limit: int) -> intake.Door:
    # One per body limit (a setting): a snappy body's declared size is checked against it.
    return intake.Door(
        MEDIA_TYPES,
        functools.partial(_decode, limit),
        _leave_out,
        _reply,
        credentials=loki_credentials,
    )


async def push(request: Request) -> Response:
    """``POST /loki/api/v1/push``: a Loki push, protobuf or JSON, stored whole or not at all."""
    return await intake.accept_batch(request, _door(app_state(request).config.max_body_bytes))


# -- The declaration (web/endpoint.py) ----------------------------------------------------------

_LABELS = {
    "type": "object",
    "minProperties": 1,
    "description": "The stream's labels: names [a-zA-Z_][a-zA-Z0-9_]*, values without NUL",
    "additionalProperties": {"type": "string"},
}
_ENTRY = {
    "type": "array",
    "minItems": 2,
    "maxItems": 3,
    "description": "[Unix epoch nanoseconds as a string, the line, optional structured metadata]",
    "items": {"oneOf": [{"type": "string"}, {"type": "object"}]},
}
_JSON_PUSH = {
    "type": "object",
    "required": ["streams"],
    "properties": {
        "streams": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "stream": _LABELS,
                    "values": {"type": "array", "items": _ENTRY},
                },
            },
        }
    },
}
ENDPOINT = Endpoint(
    "/loki/api/v1/push",
    push,
    (
        Operation(
            "POST",
            "lokiPush",
            "ingest",
            "push logs (Loki)",
            "Loki's push API: a snappy-compressed protobuf logproto.PushRequest, or its JSON "
            "form. Stored whole or not at all: any bad stream or entry is a 400 naming the "
            "first 20 (docs/ingestion.md, POST /loki/api/v1/push, has the label mapping). At "
            "most GRAMLOGS_MAX_BATCH_ENTRIES entries (413 beyond). Entries of functions whose "
            "logs are disabled are left out. A key that may write: basic auth (user: the "
            "project slug, password: the key), or Gram-Key with Gram-Project, or Authorization: "
            "Bearer with X-Scope-OrgID. Errors are plain text, as Loki's." + CONTENT_ENCODING,
            Ok("Stored (durable); no body.", {}, status=204),
            raises=(PayloadTooLarge, UnsupportedMediaType),
            security=(
                {BASIC: []},
                {GRAM_KEY_SCHEME: [], PROJECT_SCHEME: []},
                {BEARER: [], ORG_ID_SCHEME: []},
            ),
            body=Body(
                {
                    PROTOBUF: {"type": "string", "format": "binary"},
                    JSON: _JSON_PUSH,
                },
                "snappy (block format) of a protobuf logproto.PushRequest, or its JSON form.",
            ),
        ),
    ),
)
