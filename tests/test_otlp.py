"""POST /v1/logs (OTLP/HTTP): the official OpenTelemetry SDK as client, and the mapping rules."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from gramlogs.core import ids
from gramlogs.storage.functions import set_logs_enabled
from tests._support import bad_request, error

URL = "/v1/logs"
LIST = "/rpc/logs.listToolExecutionLogs"
PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


def value(v: Any) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[value(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=attributes(v)))
    return AnyValue(string_value=v)


def attributes(d: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=value(v)) for k, v in d.items()]


def record(body: Any = "hello", **fields: Any) -> LogRecord:
    attrs = fields.pop("attributes", {})
    fields.setdefault("time_unix_nano", 1_735_689_600_000_000_000)  # 2025-01-01T00:00:00Z
    return LogRecord(
        body=value(body) if body is not None else None, attributes=attributes(attrs), **fields
    )


def export(records: list[LogRecord], resource: dict[str, Any]) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(attributes=attributes(resource)),
                scope_logs=[ScopeLogs(log_records=records)],
            )
        ]
    )


def gram(f: uuid.UUID, d: uuid.UUID, **more: Any) -> dict[str, Any]:
    return {"gram.function_id": str(f), "gram.deployment_id": str(d), **more}


async def read_all(client: httpx.AsyncClient, tenant) -> list[dict[str, Any]]:
    r = await client.get(LIST, params={"sort": "asc", "per_page": "100"}, headers=tenant.headers())
    assert r.status_code == 200, r.text
    return r.json()["logs"]


async def post(client, tenant, message: ExportLogsServiceRequest, **headers: str):
    return await client.post(
        URL,
        content=message.SerializeToString(),
        headers={**tenant.headers(producer=True), **PROTOBUF, **headers},
    )


# -- the OpenTelemetry SDK as the client, end to end over real HTTP ------------------------------


@pytest.fixture(scope="module")
def server(serve) -> Iterator[Any]:
    with serve() as s:
        yield s


def _sdk_logger(exporter: Any, resource: dict[str, str]) -> tuple[logging.Logger, Any]:
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource as SdkResource

    provider = LoggerProvider(resource=SdkResource.create(resource))
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    with warnings.catch_warnings():
        # The SDK's own handler is deprecated in favour of opentelemetry-instrumentation-logging;
        # it is still the SDK's, and it is what people use today.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=provider)
    logger = logging.getLogger(f"gramlogs.tests.otlp.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, provider


def _emit_through_logging(logger: logging.Logger) -> None:
    logger.debug("cache miss key=%s", "k1")
    logger.info("tool call started", extra={"gram.execution_id": "exec-42", "tool": "search"})
    logger.warning("slow upstream: %dms", 1200)
    logger.error("upstream returned 502", extra={"gram.source": "stderr"})
    logger.critical("giving up")


def _sdk_exporter(kind: str, url: str, headers: dict[str, str]) -> Any:
    if kind == "protobuf":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=url, headers=headers, compression=Compression.Gzip)
    from opentelemetry.exporter.otlp.json.http._log_exporter import (
        OTLPLogExporter as JsonLogExporter,
    )

    return JsonLogExporter(endpoint=url, headers=headers)


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_python_logging_through_the_otel_sdk_comes_back_through_the_gram_api(
    client, server, tenant, fd, pool, encoding
):
    f, d = fd
    exporter = _sdk_exporter(encoding, server.url + URL, tenant.headers(producer=True))
    resource = {
        "service.name": "checkout",
        "service.instance.id": "snowy-water-123",
        "gram.function_id": str(f),
        "gram.deployment_id": str(d),
    }
    logger, provider = _sdk_logger(exporter, resource)
    before = datetime.now(UTC)
    try:
        await asyncio.to_thread(_emit_through_logging, logger)
        assert await asyncio.to_thread(provider.force_flush, 10_000)
    finally:
        await asyncio.to_thread(provider.shutdown)
    after = datetime.now(UTC)
    logs = await read_all(client, tenant)
    lines = [
        ("debug", "function", "cache miss key=k1"),
        ("info", "function", "tool call started"),
        ("warn", "function", "slow upstream: 1200ms"),
        ("error", "stderr", "upstream returned 502"),
        ("error", "function", "giving up"),
    ]
    assert [
        {k: v for k, v in log.items() if k not in ("id", "timestamp", "attributes")} for log in logs
    ] == [
        {
            "instance": "snowy-water-123",
            "level": level,
            "source": source,
            "raw_log": text,
            "message": text,
            "project_id": str(tenant.project_id),
            "deployment_id": str(d),
            "function_id": str(f),
        }
        for level, source, text in lines
    ]
    for log in logs:
        assert before <= ids.parse_rfc3339(log["timestamp"]) <= after
        assert ids.matches_timestamp(uuid.UUID(log["id"]), ids.parse_rfc3339(log["timestamp"]))
    attrs = [json.loads(log["attributes"]) for log in logs]
    assert attrs[1]["tool"] == "search"
    assert all(a["code.file.path"] == __file__ for a in attrs)
    assert all(a["code.function.name"] == "_emit_through_logging" for a in attrs)
    assert not any(key.startswith("gram.") for a in attrs for key in a)
    executions = await pool.fetch(
        "SELECT execution_id FROM logs WHERE project_id = $1 ORDER BY id", tenant.project_id
    )
    assert [row["execution_id"] for row in executions] == [None, "exec-42", None, None, None]


# -- mapping ------------------------------------------------------------------------------------


async def test_severity_number_wins_and_text_is_the_fallback(client, tenant, fd):
    cases = [
        (1, "", "debug"),
        (5, "INFO", "debug"),
        (9, "", "info"),
        (12, "", "info"),
        (13, "", "warn"),
        (17, "", "error"),
        (21, "", "error"),
        (24, "", "error"),
        (0, "Warning", "warn"),
        (0, "CRITICAL", "error"),
        (0, "", "info"),
        (0, "loud", "info"),
    ]
    records = [
        record(f"line {i}", severity_number=n, severity_text=t, time_unix_nano=1_000_000 * (i + 1))
        for i, (n, t, _) in enumerate(cases)
    ]
    r = await post(client, tenant, export(records, gram(*fd)))
    assert (r.status_code, r.content) == (200, b"")
    assert [log["level"] for log in await read_all(client, tenant)] == [c[2] for c in cases]


async def test_bodies_map_to_raw_log_and_only_strings_to_message(client, tenant, fd):
    bodies = ["plain text", {"a": 1, "b": [True, "x"]}, 42, 2.5, b"\x01\x02", None]
    records = [record(b, time_unix_nano=1_000_000 * (i + 1)) for i, b in enumerate(bodies)]
    r = await post(client, tenant, export(records, gram(*fd)))
    assert r.status_code == 200
    logs = await read_all(client, tenant)
    assert [(log["raw_log"], log.get("message")) for log in logs] == [
        ("plain text", "plain text"),
        ('{"a":1,"b":[true,"x"]}', None),
        ("42", None),
        ("2.5", None),
        ('"AQI="', None),
        ("", None),
    ]


async def test_time_falls_back_to_observed_time_then_now(client, tenant, fd):
    records = [
        record("a", time_unix_nano=1_700_000_000_123_456_789, observed_time_unix_nano=5),
        record("b", time_unix_nano=0, observed_time_unix_nano=1_700_000_001_000_000_000),
        record("c", time_unix_nano=0),
    ]
    before = datetime.now(UTC)
    r = await post(client, tenant, export(records, gram(*fd)))
    after = datetime.now(UTC)
    assert r.status_code == 200
    logs = await read_all(client, tenant)
    assert [log["timestamp"] for log in logs[:2]] == [
        "2023-11-14T22:13:20.123456Z",
        "2023-11-14T22:13:21Z",
    ]
    assert before <= ids.parse_rfc3339(logs[2]["timestamp"]) <= after


async def test_record_attributes_override_resource_and_trace_ids_are_kept(client, tenant, fd, pool):
    f, d = fd
    g = uuid.uuid4()
    resource = gram(f, d, **{"gram.execution_id": "from-resource", "service.name": "svc"})
    rec = record(
        "x",
        attributes={"gram.function_id": str(g), "gram.source": "Server", "user": "ann", "n": 2},
        trace_id=bytes(range(16)),
        span_id=bytes(range(8)),
    )
    r = await post(client, tenant, export([rec], resource))
    assert r.status_code == 200
    [log] = await read_all(client, tenant)
    assert (log["function_id"], log["deployment_id"], log["source"]) == (str(g), str(d), "server")
    assert json.loads(log["attributes"]) == {
        "n": 2,
        "user": "ann",
        "trace_id": "000102030405060708090a0b0c0d0e0f",
        "span_id": "0001020304050607",
    }
    execution = await pool.fetchval(
        "SELECT execution_id FROM logs WHERE project_id = $1", tenant.project_id
    )
    assert execution == "from-resource"


# -- partial success and errors -----------------------------------------------------------------


async def test_invalid_records_are_rejected_in_partial_success(client, tenant, fd):
    f, d = fd
    records = [
        record("good", attributes=gram(f, d)),
        record("no function", attributes={"gram.deployment_id": str(d)}),
        record("bad uuid", attributes=gram(f, d, **{"gram.function_id": "nope"})),
        record("nul \x00", attributes=gram(f, d)),
        record("old", attributes=gram(f, d), time_unix_nano=2**64 - 1),
    ]
    r = await post(client, tenant, export(records, {}))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-protobuf"
    reply = ExportLogsServiceResponse.FromString(r.content)
    assert reply.partial_success.rejected_log_records == 4
    assert reply.partial_success.error_message == (
        "4 log records rejected: "
        "resourceLogs[0].scopeLogs[0].logRecords[1]: gram.function_id: is missing (a resource"
        " or log record attribute); "
        "resourceLogs[0].scopeLogs[0].logRecords[2]: gram.function_id: must be a uuid; got 'nope'; "
        "resourceLogs[0].scopeLogs[0].logRecords[3]: body: contains a NUL character, which"
        " cannot be stored; "
        "resourceLogs[0].scopeLogs[0].logRecords[4]: timestamp: 2554-07-21T23:34:33.709551+00:00"
        " is outside 1970-01-01T00:00:00+00:00 .. 2100-01-01T00:00:00+00:00"
    )
    assert [log["raw_log"] for log in await read_all(client, tenant)] == ["good"]


async def test_partial_success_in_json_for_a_json_request(client, tenant, fd):
    f, d = fd
    body = {
        "resourceLogs": [
            {
                "resource": {"attributes": []},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": "1735689600000000000",
                                "body": {"stringValue": "ok"},
                                "attributes": [
                                    {"key": "gram.function_id", "value": {"stringValue": str(f)}},
                                    {
                                        "key": "gram.deployment_id",
                                        "value": {"stringValue": str(d)},
                                    },
                                ],
                            },
                            {"timeUnixNano": "1735689600000000000", "body": {"stringValue": "x"}},
                        ]
                    }
                ],
            }
        ]
    }
    r = await client.post(URL, json=body, headers={**tenant.headers(producer=True), **JSON})
    assert (r.status_code, r.headers["content-type"]) == (200, "application/json")
    assert r.json() == {
        "partialSuccess": {
            "rejectedLogRecords": "1",
            "errorMessage": "1 log records rejected: resourceLogs[0].scopeLogs[0].logRecords[1]:"
            " gram.function_id: is missing (a resource or log record attribute)",
        }
    }


async def test_request_with_no_valid_record_is_400(client, tenant):
    r = await post(client, tenant, export([record("a"), record("b")], {}))
    problem = "gram.function_id: is missing (a resource or log record attribute)"
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            "no log record could be stored: 2 invalid: "
            f"resourceLogs[0].scopeLogs[0].logRecords[0]: {problem}; "
            f"resourceLogs[0].scopeLogs[0].logRecords[1]: {problem}"
        ),
    )


async def test_records_of_a_disabled_function_are_rejected(client, tenant, fd, pool):
    f, d = fd
    off = uuid.uuid4()
    async with pool.acquire() as conn:
        await set_logs_enabled(conn, tenant.project_id, off, False)
    records = [record("on", attributes=gram(f, d)), record("off", attributes=gram(off, d))]
    r = await post(client, tenant, export(records, {}))
    reply = ExportLogsServiceResponse.FromString(r.content)
    assert (r.status_code, reply.partial_success.rejected_log_records) == (200, 1)
    assert reply.partial_success.error_message == (
        f"1 log records rejected: logs are disabled for function {off} in this project (1 records)"
    )
    assert [log["raw_log"] for log in await read_all(client, tenant)] == ["on"]


async def test_otlp_json_with_hex_ids_and_string_integers(client, tenant, fd):
    f, d = fd
    body = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [
                        {"key": "gram.function_id", "value": {"stringValue": str(f)}},
                        {"key": "gram.deployment_id", "value": {"stringValue": str(d)}},
                        {"key": "service.instance.id", "value": {"stringValue": "i-1"}},
                    ]
                },
                "scopeLogs": [
                    {
                        "scope": {"name": "my.library", "version": "1.0.0"},
                        "logRecords": [
                            {
                                "timeUnixNano": "1544712660300000000",
                                "observedTimeUnixNano": 1544712660300000000,
                                "severityNumber": 10,
                                "severityText": "Information",
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "body": {"stringValue": "Example log record"},
                                "attributes": [
                                    {"key": "int", "value": {"intValue": "245"}},
                                    {
                                        "key": "list",
                                        "value": {
                                            "arrayValue": {
                                                "values": [
                                                    {"doubleValue": 637.704},
                                                    {"boolValue": True},
                                                ]
                                            }
                                        },
                                    },
                                ],
                                "someFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    r = await client.post(URL, json=body, headers={**tenant.headers(producer=True), **JSON})
    assert (r.status_code, r.json()) == (200, {})
    [log] = await read_all(client, tenant)
    assert {k: v for k, v in log.items() if k != "id"} == {
        "timestamp": "2018-12-13T14:51:00.300000Z",
        "instance": "i-1",
        "level": "info",
        "source": "function",
        "raw_log": "Example log record",
        "message": "Example log record",
        "attributes": json.dumps(
            {
                "int": 245,
                "list": [637.704, True],
                "span_id": "eee19b7ec3c1b174",
                "trace_id": "5b8efff798038103d269b633813fc60c",
            }
        ),
        "project_id": str(tenant.project_id),
        "deployment_id": str(d),
        "function_id": str(f),
    }


async def test_resending_an_export_stores_nothing_twice(client, tenant, fd, pool):
    message = export([record(f"line {i}") for i in range(5)], gram(*fd))
    for _ in range(3):
        r = await post(client, tenant, message)
        assert (r.status_code, r.content) == (200, b"")
    count = await pool.fetchval(
        "SELECT count(*) FROM logs WHERE project_id = $1", tenant.project_id
    )
    assert count == 5


async def test_gzipped_protobuf_and_bearer_authorization(client, tenant, fd):
    body = gzip.compress(export([record("zipped")], gram(*fd)).SerializeToString())
    headers = {
        "authorization": f"Bearer {tenant.producer_key}",
        "gram-project": tenant.slug,
        "content-encoding": "gzip",
        **PROTOBUF,
    }
    r = await client.post(URL, content=body, headers=headers)
    assert (r.status_code, r.content) == (200, b"")
    assert [log["raw_log"] for log in await read_all(client, tenant)] == ["zipped"]


async def test_empty_export_is_ok(client, tenant):
    r = await post(client, tenant, ExportLogsServiceRequest())
    assert (r.status_code, r.content) == (200, b"")
    r = await client.post(URL, json={}, headers={**tenant.headers(producer=True), **JSON})
    assert (r.status_code, r.json()) == (200, {})


@pytest.mark.parametrize(
    ("content", "headers", "message"),
    [
        (b"\xff\xff\xff", PROTOBUF, "the body is not a protobuf ExportLogsServiceRequest"),
        (b"{", JSON, "the body is not valid JSON: Input data was truncated"),
        (
            json.dumps(
                {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "xyz"}]}]}]}
            ).encode(),
            JSON,
            "traceId must be hex; got 'xyz'",
        ),
    ],
)
async def test_undecodable_bodies_are_400(client, tenant, content, headers, message):
    r = await client.post(
        URL, content=content, headers={**tenant.headers(producer=True), **headers}
    )
    assert (r.status_code, error(r)) == (400, bad_request(message))


async def test_deeply_nested_json_is_400_not_500(client, tenant):
    body = b'{"resourceLogs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = await client.post(URL, content=body, headers={**tenant.headers(producer=True), **JSON})
    assert (r.status_code, error(r)) == (400, bad_request("the body is nested too deeply"))


async def test_json_of_the_wrong_shape_is_400(client, tenant):
    r = await client.post(
        URL, content=b'{"resourceLogs": 5}', headers={**tenant.headers(producer=True), **JSON}
    )
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            "the body is not an OTLP/JSON ExportLogsServiceRequest: $.resourceLogs must be an array"
        ),
    )


async def test_a_string_where_a_message_belongs_is_400_not_an_empty_message(client, tenant):
    # protobuf's parser alone would read "AAA" as a scope whose fields are unknown ("A").
    r = await client.post(
        URL,
        content=b'{"resourceLogs": [{"resource": {}, "scopeLogs": ["AAA"]}]}',
        headers={**tenant.headers(producer=True), **JSON},
    )
    assert (r.status_code, error(r)) == (
        400,
        bad_request(
            "the body is not an OTLP/JSON ExportLogsServiceRequest:"
            " $.resourceLogs[0].scopeLogs[0] must be an object"
        ),
    )


async def test_export_needs_a_key_that_may_write_and_an_otlp_content_type(client, tenant):
    body = ExportLogsServiceRequest().SerializeToString()
    r = await client.post(URL, content=body, headers={**tenant.headers(), **PROTOBUF})
    assert (r.status_code, error(r)) == (
        403,
        bad_request(
            "this key has scope 'consumer', which lacks the 'write' permission", "forbidden"
        ),
    )
    r = await client.post(URL, content=body, headers=PROTOBUF)
    assert (r.status_code, error(r)) == (
        401,
        bad_request("missing Gram-Key header", "unauthorized"),
    )
    r = await client.post(
        URL, content=body, headers={**tenant.headers(producer=True), "content-type": "text/plain"}
    )
    assert (r.status_code, error(r)) == (
        415,
        bad_request(
            "Content-Type must be one of application/x-protobuf, application/protobuf,"
            " application/json; got 'text/plain'",
            "unsupported_media_type",
        ),
    )


def test_bytes_attributes_are_base64():
    # A unit check of the one encoding choice the JSON round trip above cannot show.
    from gramlogs.web.otlp import _plain

    assert _plain(value(b"\x00\xff")) == base64.b64encode(b"\x00\xff").decode()
