"""OTLP/HTTP logs: ``POST /v1/logs``, so that any OpenTelemetry SDK or Collector can ship here.

Both OTLP encodings decode into the generated protobuf classes of ``opentelemetry-proto``
(binary with ``FromString``; JSON with ``json_format`` after turning the hex trace and span ids
that OTLP/JSON uses into the base64 that protobuf's JSON mapping expects), then map to the same
rows as ``POST /rpc/logs.ingest`` (docs/ingestion.md, "POST /v1/logs"). Records that cannot be
stored are counted in the reply's ``partial_success`` and the others are stored, as the OTLP
specification asks; a request none of whose records is valid is a 400, so that a misconfigured
exporter logs an error instead of silently losing everything. ``Idempotency-Key`` works as on
``logs.ingest`` (``storage/idempotency.py``). This module holds the format; the steps around
it, the same for ``logs.ingest``, are ``intake.accept_batch``'s.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import ids, metrics
from gramlogs.core.errors import (
    BadRequest,
    PayloadTooLarge,
    UnprocessableContent,
    UnsupportedMediaType,
    shorten,
)
from gramlogs.storage.batch import (
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
from gramlogs.web import intake
from gramlogs.web.counting import more_values_than
from gramlogs.web.endpoint import (  # for the declaration, at the end
    BEARER,
    CONTENT_ENCODING,
    GRAM_SECURITY,
    PROJECT_SCHEME,
    REPLAYED_HEADER,
    Body,
    Endpoint,
    Ok,
    Operation,
    component,
)
from gramlogs.web.ingest import MAX_ENTRIES
from gramlogs.web.params import GRAM_KEY, GRAM_PROJECT, IDEMPOTENCY_KEY_HEADER, string

__all__ = ["ENDPOINT", "check_count", "map_request", "parse_request", "receive_logs"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MEDIA_TYPES = (PROTOBUF, "application/protobuf", JSON)

FUNCTION_ID = "gram.function_id"
DEPLOYMENT_ID = "gram.deployment_id"
EXECUTION_ID = "gram.execution_id"
SOURCE = "gram.source"
INSTANCE = "service.instance.id"
_GRAM_KEYS = frozenset((FUNCTION_ID, DEPLOYMENT_ID, EXECUTION_ID, SOURCE))

_encoder = msgspec.json.Encoder()
_ID_FIELDS = ("traceId", "spanId", "trace_id", "span_id")


def _level(record: LogRecord) -> str:
    # SeverityNumber ranges (OTel logs data model): 1-4 TRACE, 5-8 DEBUG, 9-12 INFO,
    # 13-16 WARN, 17-20 ERROR, 21-24 FATAL. The number is authoritative; the text is a fallback.
    n = record.severity_number
    if 1 <= n <= 8:
        return "debug"
    if 9 <= n <= 12:
        return "info"
    if 13 <= n <= 16:
        return "warn"
    if n >= 17:
        return "error"
    return normalise_level(record.severity_text) or "info"


def _plain(value: AnyValue) -> Any:
    """An AnyValue as plain JSON data (bytes as base64, as OTLP/JSON writes them)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def _timestamp(record: LogRecord, now: datetime) -> datetime:
    nanos = record.time_unix_nano or record.observed_time_unix_nano
    if not nanos:
        return now
    return ids.EPOCH + timedelta(microseconds=nanos // 1000)


def _uuid_attribute(builder: BatchBuilder, attrs: dict[str, AnyValue], key: str) -> str:
    value = attrs.get(key)
    if value is None:
        raise EntryError(key, "is missing (a resource or log record attribute)")
    if value.WhichOneof("value") != "string_value":
        raise EntryError(key, "must be a string attribute holding a uuid")
    return builder.uuid(key, value.string_value)


def _string_attribute(attrs: dict[str, AnyValue], key: str) -> str | None:
    value = attrs.get(key)
    if value is None:
        return None
    if value.WhichOneof("value") != "string_value":
        raise EntryError(key, "must be a string attribute")
    return value.string_value


def _add_record(
    builder: BatchBuilder,
    record: LogRecord,
    resource: dict[str, AnyValue],
    now: datetime,
) -> None:
    attrs = dict(resource)
    own = {kv.key: kv.value for kv in record.attributes}
    attrs.update(own)
    source = (_string_attribute(attrs, SOURCE) or "function").strip().lower()
    if source not in SOURCES:
        raise EntryError(SOURCE, f"must be one of {', '.join(SOURCES)}; got {shorten(source)!r}")
    extra = {key: _plain(value) for key, value in own.items() if key not in _GRAM_KEYS}
    if record.trace_id and "trace_id" not in extra:
        extra["trace_id"] = record.trace_id.hex()
    if record.span_id and "span_id" not in extra:
        extra["span_id"] = record.span_id.hex()
    kind = record.body.WhichOneof("value")
    if kind == "string_value":
        raw_log = message = record.body.string_value
    else:
        raw_log = "" if kind is None else _encoder.encode(_plain(record.body)).decode("utf-8")
        message = None
    execution_id = _string_attribute(attrs, EXECUTION_ID)
    instance = _string_attribute(resource, INSTANCE) or ""
    builder.add(
        _timestamp(record, now),
        check_text("body", raw_log, MAX_RAW_LOG_BYTES),
        _level(record),
        source,
        check_text(INSTANCE, instance, MAX_NAME_BYTES),
        None if message is None else check_text("body", message, MAX_MESSAGE_BYTES),
        encode_attributes(extra),
        _uuid_attribute(builder, attrs, FUNCTION_ID),
        _uuid_attribute(builder, attrs, DEPLOYMENT_ID),
        (None if execution_id is None else check_text(EXECUTION_ID, execution_id, MAX_NAME_BYTES)),
    )


def _records(
    request: ExportLogsServiceRequest,
) -> Iterator[tuple[str, LogRecord, dict[str, AnyValue]]]:
    for r, resource_logs in enumerate(request.resource_logs):
        resource = {kv.key: kv.value for kv in resource_logs.resource.attributes}
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            for i, record in enumerate(scope_logs.log_records):
                yield f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}]", record, resource


def map_request(
    request: ExportLogsServiceRequest, project_id: uuid.UUID, now: datetime | None = None
) -> intake.Decoded:
    """Every storable record as a row; the others counted and described."""
    now = now or datetime.now(UTC)
    builder = BatchBuilder(project_id)
    problems = intake.Problems()
    for where, record, resource in _records(request):
        try:
            _add_record(builder, record, resource, now)
            continue
        except EntryError as exc:
            problem = f"{where}: {exc.field}: {exc.reason}"
        except RecursionError:
            problem = f"{where}: is nested too deeply"
        problems.add(problem)
    return intake.Decoded(builder.rows, problems.count, problems.listed)


def _prepare(value: Any, descriptor: Any, path: str) -> None:
    """Make decoded OTLP/JSON fit for protobuf's JSON parser, in one walk guided by the schema.

    - A JSON value that is not an object where a message belongs is a 400 naming where:
      protobuf's parser, told to ignore unknown fields, reads any iterable as a message
      (``"scopeLogs": ["AAA"]`` would pass as one empty scope, each character a field).
    - OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping reads bytes as base64.
    """
    if not isinstance(value, dict):
        raise BadRequest(
            f"the body is not an OTLP/JSON ExportLogsServiceRequest: {path} must be an object"
        )
    for key, item in value.items():
        field = descriptor.fields_by_camelcase_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None or item is None:
            continue
        if field.message_type is None:
            # Only a LogRecord has these fields in a logs request.
            if key in _ID_FIELDS and isinstance(item, str):
                try:
                    value[key] = base64.b64encode(bytes.fromhex(item)).decode()
                except ValueError:
                    raise BadRequest(f"{key} must be hex; got {shorten(item)!r}") from None
            continue
        where = f"{path}.{key}"
        if not _repeated(field):
            _prepare(item, field.message_type, where)
            continue
        if not isinstance(item, list):
            raise BadRequest(
                f"the body is not an OTLP/JSON ExportLogsServiceRequest: {where} must be an array"
            )
        for n, element in enumerate(item):
            _prepare(element, field.message_type, f"{where}[{n}]")


def _repeated(field: Any) -> bool:
    # protobuf 7 dropped FieldDescriptor.label for is_repeated (added in 5.29).
    is_repeated: bool | None = getattr(field, "is_repeated", None)
    return is_repeated if is_repeated is not None else field.label == field.LABEL_REPEATED


def parse_request(body: bytes, kind: str) -> ExportLogsServiceRequest:
    """An ExportLogsServiceRequest from either OTLP encoding; 400 when it does not decode."""
    if kind != JSON:
        try:
            return ExportLogsServiceRequest.FromString(body)
        except DecodeError:
            raise BadRequest("the body is not a protobuf ExportLogsServiceRequest") from None
    try:
        data = msgspec.json.decode(body)
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    try:
        _prepare(data, ExportLogsServiceRequest.DESCRIPTOR, "$")
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    request = ExportLogsServiceRequest()
    try:
        # OTLP/JSON: receivers must ignore unknown fields (forward compatibility).
        json_format.ParseDict(data, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        # protobuf nests "Failed to parse x field: " once per level: keep the message short.
        reason = str(exc) if len(str(exc)) <= 300 else str(exc)[:300] + "…"
        raise BadRequest(
            f"the body is not an OTLP/JSON ExportLogsServiceRequest: {reason}"
        ) from None
    return request


def check_count(body: bytes, kind: str, cap: int) -> None:
    """The 413 for a request of more than ``cap`` log records, counted before any is decoded:
    a field walk of the protobuf (stopping past the cap), or a decode of the JSON that skips
    each record's fields. A few hundred bytes of gzip can hold 400,000 empty records."""
    count = _json_records(body, cap) if kind == JSON else _protobuf_records(body, cap)
    if count > cap:
        raise PayloadTooLarge(f"a request holds at most {cap} log records; this one has more")


class _Skipped(msgspec.Struct, gc=False):
    """A record counted, not read: msgspec skips an object's fields without making them."""


class _JsonScopeLogs(msgspec.Struct):
    # OTLP/JSON writes lowerCamelCase; protobuf's JSON parser reads the proto names too.
    camel: list[_Skipped] | None = msgspec.field(default=None, name="logRecords")
    snake: list[_Skipped] | None = msgspec.field(default=None, name="log_records")


class _JsonResourceLogs(msgspec.Struct):
    camel: list[_JsonScopeLogs] | None = msgspec.field(default=None, name="scopeLogs")
    snake: list[_JsonScopeLogs] | None = msgspec.field(default=None, name="scope_logs")


class _JsonRequest(msgspec.Struct):
    camel: list[_JsonResourceLogs] | None = msgspec.field(default=None, name="resourceLogs")
    snake: list[_JsonResourceLogs] | None = msgspec.field(default=None, name="resource_logs")


_count_decoder = msgspec.json.Decoder(_JsonRequest)
# A record's body is an object, and each of its attributes two.
_OBJECTS_PER_RECORD = 16
# Where records sit: {"resourceLogs": [{"scopeLogs": [{"logRecords": [...]}]}]}.
_RECORDS_IN_JSON = b"{[{[{["
# Values a body of the wrong shape may hold before it is refused without being decoded whole (to
# name what is wrong with it): per allowed record, a few.
_VALUES_PER_RECORD = 8


def _json_records(body: bytes, cap: int) -> int:
    if body.count(b"{") > _OBJECTS_PER_RECORD * cap:
        # The decode below would make an object per record: count by scanning instead.
        return cap + 1 if more_values_than(body, _RECORDS_IN_JSON, cap) else 0
    try:
        request = _count_decoder.decode(body)
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except msgspec.ValidationError as exc:
        values = body.count(b",") + body.count(b"[") + body.count(b"{")
        if values <= _VALUES_PER_RECORD * cap:
            return 0  # parse_request decodes it and says what is wrong
        raise BadRequest(
            f"the body is not an OTLP/JSON ExportLogsServiceRequest: {_shape_problem(exc)}"
        ) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    count = 0
    for resource in (request.camel or []) + (request.snake or []):
        for scope in (resource.camel or []) + (resource.snake or []):
            count += len(scope.camel or ()) + len(scope.snake or ())
    return count


def _shape_problem(exc: msgspec.ValidationError) -> str:
    # "Expected `array | null`, got `int` - at `$.resourceLogs`" -> "$.resourceLogs must be an
    # array", as _prepare says it.
    text = str(exc)
    reason, sep, path = text.rpartition(" - at `")
    if not sep:
        return text
    wanted = "an array" if reason.startswith("Expected `array") else "an object"
    return f"{path.rstrip('`')} must be {wanted}"


# Field numbers of the path to the records: ExportLogsServiceRequest.resource_logs (1),
# ResourceLogs.scope_logs (2), ScopeLogs.log_records (2).
_RECORDS_PATH = (1, 2, 2)
_LENGTH_DELIMITED = 2


def _protobuf_records(body: bytes, cap: int) -> int:
    view = memoryview(body)
    try:
        return _walk(view, 0, len(view), 0, cap)
    except IndexError:
        raise BadRequest("the body is not a protobuf ExportLogsServiceRequest") from None


def _walk(data: memoryview, start: int, end: int, level: int, cap: int) -> int:
    """Records in ``data[start:end]``, a message at ``level`` of _RECORDS_PATH; IndexError for
    bytes that are not protobuf. Stops once past ``cap``."""
    count = 0
    i = start
    while i < end:
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(data, i)
            continue
        if wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == _LENGTH_DELIMITED:
            size, i = _varint(data, i)
            if i + size > end:
                raise IndexError
            if field == _RECORDS_PATH[level]:
                if level == len(_RECORDS_PATH) - 1:
                    count += 1
                else:
                    count += _walk(data, i, i + size, level + 1, cap - count)
                if count > cap:
                    return count
            i += size
        else:  # groups (3, 4) have no place in OTLP; 6 and 7 do not exist
            raise IndexError
        if i > end:
            raise IndexError
    return count


def _varint(data: memoryview, i: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        byte = data[i]  # IndexError past the end
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise IndexError


def _decode(body: bytes, kind: str, project_id: uuid.UUID, cap: int) -> intake.Decoded:
    # For the body threads: the records counted, decoded and mapped; a request none of whose
    # records can be stored is a 400, so that a misconfigured exporter logs an error.
    check_count(body, kind, cap)
    decoded = map_request(parse_request(body, kind), project_id)
    if decoded.rejected and not decoded.rows:
        metrics.rejected("invalid", decoded.rejected)
        raise BadRequest(
            f"no log record could be stored: {decoded.rejected} invalid"
            f"{intake.first_shown(decoded.rejected)}: " + "; ".join(decoded.problems)
        )
    return decoded


def _leave_out(decoded: intake.Decoded, disabled: set[uuid.UUID]) -> intake.Decoded:
    # As for an invalid record: the others are stored, and the reply's partial_success counts
    # and names what was not.
    off = set(intake.entries_of(decoded.rows, disabled))
    kept = [row for i, row in enumerate(decoded.rows) if i not in off]
    metrics.rejected("disabled", len(off))
    problem = (
        f"logs are disabled for function {intake.listed(sorted(disabled))} in this project"
        f" ({len(off)} records)"
    )
    return intake.Decoded(kept, decoded.rejected + len(off), [*decoded.problems, problem])


def _reply(kind: str, decoded: intake.Decoded, stored: int, duplicates: int) -> Reply:
    # What was new does not matter: records stored before are accepted again.
    response = ExportLogsServiceResponse()
    if decoded.rejected:
        response.partial_success.rejected_log_records = decoded.rejected
        response.partial_success.error_message = (
            f"{decoded.rejected} log records rejected: " + "; ".join(decoded.problems)
        )
    if kind == JSON:
        return Reply(200, JSON, json_format.MessageToJson(response, indent=None).encode())
    return Reply(200, PROTOBUF, response.SerializeToString())


_DOOR = intake.Door(MEDIA_TYPES, _decode, _leave_out, _reply)


async def receive_logs(request: Request) -> Response:
    """``POST /v1/logs``: OTLP/HTTP ExportLogsServiceRequest, protobuf or JSON, maybe gzipped."""
    return await intake.accept_batch(request, _DOOR)


# -- The declaration (web/endpoint.py); the OTLP schemas are in web/openapi.py ---------------

_BINARY = {"type": "string", "format": "binary"}
ENDPOINT = Endpoint(
    "/v1/logs",
    receive_logs,
    (
        Operation(
            "POST",
            "exportLogs",
            "ingest",
            "export logs (OTLP/HTTP)",
            "OTLP/HTTP logs: an ExportLogsServiceRequest in protobuf or JSON. Records that "
            "cannot be stored are counted in partialSuccess and the others stored (200); when "
            "no record is valid, or the body does not decode, a 400. At most "
            f"GRAMLOGS_MAX_BATCH_ENTRIES (default {MAX_ENTRIES}) log records, counted before any "
            "is decoded (413 payload_too_large beyond). A key that may write (scope ingest, "
            "admin or producer), in Gram-Key or Authorization: Bearer, with Gram-Project."
            + CONTENT_ENCODING,
            Ok(
                "ExportLogsServiceResponse, in the request's encoding (protobuf for either "
                "protobuf type).",
                {JSON: component("ExportLogsServiceResponse"), PROTOBUF: _BINARY},
                REPLAYED_HEADER,
            ),
            (
                string(
                    GRAM_KEY.name,
                    "API Key header (a leading 'Bearer ' is tolerated); or send "
                    "Authorization: Bearer <key>",
                    "header",
                ),
                GRAM_PROJECT,
                IDEMPOTENCY_KEY_HEADER,
            ),
            raises=(PayloadTooLarge, UnsupportedMediaType, UnprocessableContent),
            security=(
                *GRAM_SECURITY,
                {BEARER: [], PROJECT_SCHEME: []},
            ),
            body=Body(
                {
                    PROTOBUF: _BINARY,
                    "application/protobuf": _BINARY,
                    JSON: component("ExportLogsServiceRequest"),
                }
            ),
        ),
    ),
)
