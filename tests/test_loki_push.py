"""POST /loki/api/v1/push: protobuf + snappy and JSON bodies, the label mapping, atomic batches,
every kind of bad input, and Loki's ways of authenticating.

Protobuf bodies are built with the ``protobuf`` runtime from a descriptor of Loki's push.proto
written here, independently of the server's hand-written decoder (web/loki/logproto.py).
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import cramjam
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.storage.functions import set_logs_enabled
from gramlogs.web.loki.logproto import decode_push_request, parse_labels, snappy_inflate
from gramlogs.web.loki.streams import NAMESPACE, detected_level
from tests._support import app_client

URL = "/loki/api/v1/push"
LIST = "/rpc/logs.listToolExecutionLogs"
PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
# 2025-01-01T00:00:00Z, and nanoseconds past the microsecond that the store drops.
T0 = 1_735_689_600_000_000_000


# -- Loki's push.proto (Apache-2.0), as a descriptor: the messages a push uses ------------------


def _field(name: str, number: int, kind: int, type_name: str = "", repeated: bool = False) -> Any:
    F = descriptor_pb2.FieldDescriptorProto
    field = F(
        name=name,
        number=number,
        type=kind,  # type: ignore[arg-type]
        label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL,
    )
    if type_name:
        field.type_name = type_name
    return field


def _push_request_class() -> Any:
    F = descriptor_pb2.FieldDescriptorProto
    D = descriptor_pb2.DescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="test_loki_push.proto",
        package="logproto",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
        message_type=[
            D(
                name="PushRequest",
                field=[_field("streams", 1, F.TYPE_MESSAGE, ".logproto.StreamAdapter", True)],
            ),
            D(
                name="StreamAdapter",
                field=[
                    _field("labels", 1, F.TYPE_STRING),
                    _field("entries", 2, F.TYPE_MESSAGE, ".logproto.EntryAdapter", True),
                    _field("hash", 3, F.TYPE_UINT64),
                ],
            ),
            D(
                name="LabelPairAdapter",
                field=[_field("name", 1, F.TYPE_STRING), _field("value", 2, F.TYPE_STRING)],
            ),
            D(
                name="EntryAdapter",
                field=[
                    _field("timestamp", 1, F.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
                    _field("line", 2, F.TYPE_STRING),
                    _field(
                        "structuredMetadata", 3, F.TYPE_MESSAGE, ".logproto.LabelPairAdapter", True
                    ),
                ],
            ),
        ],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logproto.PushRequest"))


PushRequest = _push_request_class()


def protobuf(streams: list[tuple[str, list[tuple[int | None, str, dict[str, str]]]]]) -> bytes:
    """A snappy-compressed PushRequest of (label text, [(ns or None, line, metadata)])."""
    request = PushRequest()
    for labels, entries in streams:
        stream = request.streams.add(labels=labels, hash=12345)
        for ns, line, metadata in entries:
            entry = stream.entries.add(line=line)
            if ns is not None:
                entry.timestamp.seconds, entry.timestamp.nanos = divmod(ns, 1_000_000_000)
            for name, value in metadata.items():
                entry.structuredMetadata.add(name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def json_push(streams: list[tuple[dict[str, str], list[list[Any]]]]) -> bytes:
    return json.dumps(
        {"streams": [{"stream": labels, "values": values} for labels, values in streams]}
    ).encode()


def basic(tenant: Any, *, producer: bool = True) -> dict[str, str]:
    key = tenant.producer_key if producer else tenant.consumer_key
    token = base64.b64encode(f"{tenant.slug}:{key}".encode()).decode()
    return {"authorization": f"Basic {token}"}


async def read_all(client: httpx.AsyncClient, tenant: Any) -> list[dict[str, Any]]:
    r = await client.get(LIST, params={"sort": "asc", "per_page": "100"}, headers=tenant.headers())
    assert r.status_code == 200, r.text
    logs: list[dict[str, Any]] = r.json()["logs"]
    return logs


async def count(pool: Any, tenant: Any) -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM logs WHERE project_id = $1", tenant.project_id)
    )


def derived(service: str) -> tuple[str, str]:
    function = str(uuid.uuid5(NAMESPACE, service))
    return function, str(uuid.uuid5(NAMESPACE, "deployment:" + function))


def micros(ns: int) -> datetime:
    """The time the Gram API answers for a pushed ``ns``: to the microsecond, rounded down."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def when(log: dict[str, Any]) -> datetime:
    return ids.parse_rfc3339(log["timestamp"])


# -- round trips --------------------------------------------------------------------------------


async def test_protobuf_push_reads_back_through_the_gram_api(client, tenant, pool):
    labels = '{service_name="checkout", level="warn", host="h-1", source="stderr", env="prod"}'
    body = protobuf(
        [
            (
                labels,
                [
                    (T0 + 123_456_789, "first line", {"trace_id": "abc"}),
                    (T0 + 2_000_000_999, "second ünïcode line", {"execution_id": "exec-7"}),
                ],
            ),
            ('{app="billing"}', [(T0 + 5_000_000_000, "level=error msg=boom", {})]),
        ]
    )
    r = await client.post(URL, content=body, headers={**basic(tenant), **PROTOBUF})
    assert (r.status_code, r.content, r.headers.get("content-type")) == (204, b"", None)
    logs = await read_all(client, tenant)
    checkout_f, checkout_d = derived("checkout")
    billing_f, billing_d = derived("billing")
    pushed = {"service_name": "checkout", "host": "h-1", "env": "prod"}
    assert [
        {**log, "id": None, "attributes": json.loads(log["attributes"]), "timestamp": when(log)}
        for log in logs
    ] == [
        {
            "id": None,
            "timestamp": micros(T0 + 123_456_789),
            "instance": "h-1",
            "level": "warn",
            "source": "stderr",
            "raw_log": "first line",
            "attributes": {"labels": pushed, "trace_id": "abc"},
            "project_id": str(tenant.project_id),
            "deployment_id": checkout_d,
            "function_id": checkout_f,
        },
        {
            "id": None,
            "timestamp": micros(T0 + 2_000_000_999),
            "instance": "h-1",
            "level": "warn",
            "source": "stderr",
            "raw_log": "second ünïcode line",
            "attributes": {"labels": pushed},
            "project_id": str(tenant.project_id),
            "deployment_id": checkout_d,
            "function_id": checkout_f,
        },
        {
            "id": None,
            "timestamp": micros(T0 + 5_000_000_000),
            "instance": "",
            "level": "error",
            "source": "stdout",
            "raw_log": "level=error msg=boom",
            "attributes": {"labels": {"app": "billing", "service_name": "billing"}},
            "project_id": str(tenant.project_id),
            "deployment_id": billing_d,
            "function_id": billing_f,
        },
    ]
    executions = await pool.fetch(
        "SELECT execution_id FROM logs WHERE project_id = $1 ORDER BY id", tenant.project_id
    )
    assert [row["execution_id"] for row in executions] == [None, "exec-7", None]


@pytest.mark.parametrize("gzipped", [False, True])
async def test_json_push_reads_back_through_the_gram_api(client, tenant, fd, gzipped):
    f, d = fd
    labels = {"function_id": str(f).upper(), "deployment_id": str(d), "job": "worker"}
    values: list[list[Any]] = [
        [str(T0 + 1_000), '{"level":"debug","msg":"json"}'],
        [str(T0 + 2_000), "ts=1 lvl=WARNING msg=logfmt"],
        [str(T0 + 3_000), "something failed: Error in upstream", {"span_id": "s1"}],
        [str(T0 + 4_000), "all good"],
    ]
    body = json_push([(labels, values)])
    headers = {**basic(tenant), **JSON}
    if gzipped:
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    r = await client.post(URL, content=body, headers=headers)
    assert (r.status_code, r.text) == (204, "")
    logs = await read_all(client, tenant)
    assert [(when(log), log["level"], log["raw_log"]) for log in logs] == [
        (micros(T0 + 1_000), "debug", '{"level":"debug","msg":"json"}'),
        (micros(T0 + 2_000), "warn", "ts=1 lvl=WARNING msg=logfmt"),
        (micros(T0 + 3_000), "error", "something failed: Error in upstream"),
        (micros(T0 + 4_000), "info", "all good"),
    ]
    assert {(log["function_id"], log["deployment_id"], log["source"]) for log in logs} == {
        (str(f), str(d), "stdout")
    }
    pushed = {"job": "worker", "service_name": "worker"}
    assert [json.loads(log["attributes"]) for log in logs] == [
        {"labels": pushed},
        {"labels": pushed},
        {"labels": pushed, "span_id": "s1"},
        {"labels": pushed},
    ]


async def test_labels_that_are_not_columns_stay_labels(client, tenant):
    labels = {
        "function_id": "not-a-uuid",
        "severity": "Critical",
        "instance": "i-9",
        "hostname": "other",
        "source": "nowhere",
    }
    r = await client.post(
        URL, content=json_push([(labels, [[str(T0), "x"]])]), headers={**basic(tenant), **JSON}
    )
    assert r.status_code == 204, r.text
    [log] = await read_all(client, tenant)
    f, d = derived("unknown_service")
    assert (log["level"], log["source"], log["instance"]) == ("error", "stdout", "i-9")
    assert (log["function_id"], log["deployment_id"]) == (f, d)
    assert json.loads(log["attributes"]) == {
        "labels": {
            "function_id": "not-a-uuid",
            "severity": "Critical",
            "hostname": "other",
            "source": "nowhere",
            "service_name": "unknown_service",
        }
    }


async def test_a_resend_stores_nothing_new(client, tenant, pool):
    body = protobuf([('{app="a"}', [(T0, "one", {}), (T0, "one", {}), (T0 + 1, "two", {})])])
    headers = {**basic(tenant), **PROTOBUF}
    assert (await client.post(URL, content=body, headers=headers)).status_code == 204
    assert await count(pool, tenant) == 3  # identical lines of one push are all kept
    assert (await client.post(URL, content=body, headers=headers)).status_code == 204
    assert await count(pool, tenant) == 3


async def test_entries_of_a_disabled_function_are_left_out(client, tenant, pool, fd):
    f, d = fd
    async with pool.acquire() as conn:
        await set_logs_enabled(conn, tenant.project_id, f, False)
    body = json_push(
        [
            ({"function_id": str(f), "deployment_id": str(d)}, [[str(T0), "off"]]),
            ({"app": "on"}, [[str(T0), "kept"]]),
        ]
    )
    r = await client.post(URL, content=body, headers={**basic(tenant), **JSON})
    assert r.status_code == 204, r.text
    assert [log["raw_log"] for log in await read_all(client, tenant)] == ["kept"]


# -- bad input: a 4xx naming the problem, plain text, and nothing stored --------------------------


async def test_a_batch_with_one_bad_entry_stores_nothing(client, tenant, pool):
    body = json_push(
        [
            ({"app": "a"}, [[str(T0), "good"]]),
            ({"app": "b"}, [[str(T0), "good"], ["yesterday", "bad"], [str(T0), "a\x00b"]]),
        ]
    )
    r = await client.post(URL, content=body, headers={**basic(tenant), **JSON})
    assert (r.status_code, r.headers["content-type"]) == (400, "text/plain; charset=utf-8")
    assert r.text == (
        "nothing was stored: 2 invalid entries or streams: streams[1].values[1]: timestamp: "
        "must be a string of Unix epoch nanoseconds; streams[1].values[2].line: contains a NUL "
        "character, which cannot be stored"
    )
    assert await count(pool, tenant) == 0


LONG = "x" * 16_385
BAD_PROTOBUF = [
    ("labels", protobuf([('app="a"', [(T0, "x", {})])]), "streams[0].labels: must be a label set"),
    ("no label", protobuf([("{}", [(T0, "x", {})])]), "a stream needs at least one label"),
    ("twice", protobuf([('{a="1",a="2"}', [(T0, "x", {})])]), "label a is given twice"),
    ("escape", protobuf([('{a="\\q"}', [(T0, "x", {})])]), "invalid escape"),
    ("no time", protobuf([('{a="1"}', [(None, "x", {})])]), "entries[0].timestamp: is required"),
    (
        "year 2100",
        protobuf([('{a="1"}', [(4_102_444_800 * 10**9, "x", {})])]),
        "entries[0].timestamp: 4102444800000000000 ns is outside",
    ),
    (
        "long line",
        protobuf([('{a="1"}', [(T0, LONG, {})])]),
        "entries[0].line: is 16385 bytes long; at most 16384 are allowed",
    ),
    (
        "metadata",
        protobuf([('{a="1"}', [(T0, "x", {"labels": "y"})])]),
        "entries[0].structuredMetadata: may not be named 'labels'",
    ),
    ("snappy", b"\x05garbage", "is not valid snappy"),
    (
        "protobuf",
        bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a")),
        "not a snappy-compressed protobuf PushRequest",
    ),
    ("huge", b"\xff\xff\xff\xff\x0f", "the request body inflates to 4294967295 bytes"),
]


@pytest.mark.parametrize(
    ("body", "says"), [c[1:] for c in BAD_PROTOBUF], ids=[c[0] for c in BAD_PROTOBUF]
)
async def test_bad_protobuf_pushes_are_refused_naming_the_problem(client, tenant, pool, body, says):
    r = await client.post(URL, content=body, headers={**basic(tenant), **PROTOBUF})
    assert r.status_code == (413 if says.startswith("the request body inflates") else 400)
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert says in r.text
    assert await count(pool, tenant) == 0


BAD_JSON = [
    ("not json", b"{", "the body is not valid JSON"),
    ("shape", b'{"streams": {}}', "Expected `array`, got `object` - at `$.streams`"),
    ("value", json_push([({"a": "1"}, [[str(T0)]])]), "streams[0].values[0]: must be [timestamp"),
    ("label", json_push([({"a": 1}, [])]), "Expected `str`, got `int`"),  # type: ignore[dict-item]
    ("name", json_push([({"a-b": "1"}, [[str(T0), "x"]])]), "'a-b' is not a label name"),
    ("negative", json_push([({"a": "1"}, [["-1", "x"]])]), "Unix epoch nanoseconds"),
    ("digits", json_push([({"a": "1"}, [["9" * 5000, "x"]])]), "Unix epoch nanoseconds"),
    ("2100", json_push([({"a": "1"}, [["9" * 20, "x"]])]), "99999999999999999999 ns is outside"),
    ("empty", json_push([({}, [[str(T0), "x"]])]), "a stream needs at least one label"),
]


@pytest.mark.parametrize(("body", "says"), [c[1:] for c in BAD_JSON], ids=[c[0] for c in BAD_JSON])
async def test_bad_json_pushes_are_refused_naming_the_problem(client, tenant, pool, body, says):
    r = await client.post(URL, content=body, headers={**basic(tenant), **JSON})
    assert r.status_code == 400, r.text
    assert says in r.text
    assert await count(pool, tenant) == 0


async def test_more_entries_than_the_cap_is_a_413(database_url, make_tenant):
    tenant = await make_tenant()
    async with app_client(database_url, max_batch_entries=3) as c:
        entries: list[tuple[int | None, str, dict[str, str]]] = [(T0, "x", {})] * 4
        r = await c.post(
            URL, content=protobuf([('{a="1"}', entries)]), headers={**basic(tenant), **PROTOBUF}
        )
        assert (r.status_code, r.text) == (413, "a push holds at most 3 entries; this one has more")
        values = [[str(T0), "x"]] * 4
        r = await c.post(
            URL, content=json_push([({"a": "1"}, values)]), headers={**basic(tenant), **JSON}
        )
        assert (r.status_code, r.text) == (413, "a push holds at most 3 entries; this one has more")


async def test_another_content_type_is_a_415(client, tenant):
    r = await client.post(
        URL, content=b"x", headers={**basic(tenant), "content-type": "text/plain"}
    )
    assert r.status_code == 415
    assert r.text.startswith("Content-Type must be one of application/x-protobuf, application/json")


# -- authentication -----------------------------------------------------------------------------


def _one_line() -> bytes:
    return json_push([({"app": "auth"}, [[str(T0), "hello"]])])


async def test_without_a_key_is_a_401(client, tenant):
    r = await client.post(URL, content=_one_line(), headers=JSON)
    assert r.status_code == 401
    assert r.text.startswith("missing API key: send the API key as basic auth's password")


async def test_a_read_only_key_is_a_403(client, tenant, pool):
    r = await client.post(
        URL, content=_one_line(), headers={**basic(tenant, producer=False), **JSON}
    )
    assert r.status_code == 403, r.text
    assert await count(pool, tenant) == 0


@pytest.mark.parametrize("how", ["basic", "bearer", "gram"])
async def test_each_of_lokis_ways_to_authenticate_works(client, tenant, how):
    headers = {
        "basic": basic(tenant),
        "bearer": {
            "authorization": f"Bearer {tenant.producer_key}",
            "x-scope-orgid": tenant.slug,
        },
        "gram": tenant.headers(producer=True),
    }[how]
    r = await client.post(URL, content=_one_line(), headers={**headers, **JSON})
    assert r.status_code == 204, r.text
    assert [log["raw_log"] for log in await read_all(client, tenant)] == ["hello"]


# -- the parts --------------------------------------------------------------------------------


def test_label_text_is_read_as_prometheus_writes_it():
    assert parse_labels('{a="b", c_1="d", _e="\\"q\\" \\\\ \\n \\t \\u00e9 \\xc3\\xa9"}') == {
        "a": "b",
        "c_1": "d",
        "_e": '"q" \\ \n \t é é',
    }
    assert parse_labels(" { job = `raw\\n` } ") == {"job": "raw\\n"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "{a}",
        '{a="b",}',
        '{a="b"',
        '{a="b"} x',
        '{a=~"b"}',
        '{1a="b"}',
        '{a="b" c="d"}',
        '{a="\\xff"}',
    ],
)
def test_bad_label_text_is_refused(text):
    with pytest.raises(ValueError):
        parse_labels(text)


@settings(max_examples=200, derandomize=True)
@given(
    st.dictionaries(
        st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True),
        st.text(st.characters(exclude_categories=["Cs"])),
        min_size=1,
        max_size=5,
    )
)
def test_label_text_round_trips_through_go_style_quoting(labels):
    # json.dumps without ensure_ascii escapes a subset of what strconv.Quote does (\", \\, \n,
    # \u00XX), and no surrogate pairs (which Go never writes).
    text = (
        "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items()) + "}"
    )
    assert parse_labels(text) == labels


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('{"level":"ERROR","msg":"x"}', "error"),
        ('{"Severity":"warning"}', "warn"),
        ('{"msg":"a warning"}', "warn"),
        ("level=debug msg=hello", "debug"),
        ('t=1 lvl="fatal"', "error"),
        ("WARN disk almost full", "warn"),
        ("an error and a warning", "error"),
        ("trace id 42", "debug"),
        ("interrupted", "info"),
        ("", "info"),
    ],
)
def test_the_level_of_a_line_without_a_level_label(line, level):
    assert detected_level(line) == level


_LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)
_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=100, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.dictionaries(_LABEL_NAMES, _TEXT, min_size=1, max_size=4),
            st.lists(
                st.tuples(st.integers(0, 2**62), _TEXT, st.dictionaries(_TEXT, _TEXT, max_size=3)),
                max_size=4,
            ),
        ),
        max_size=4,
    )
)
def test_the_protobuf_decoder_reads_what_protobuf_writes(streams):
    # Label text as Go writes it; the decoder's output against the input, field by field.
    body = protobuf(
        [
            (
                "{"
                + ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items())
                + "}",
                list(entries),
            )
            for labels, entries in streams
        ]
    )
    decoded = decode_push_request(snappy_inflate(body, 1 << 30), cap=10_000)
    assert [(s.where, s.labels, s.entries, s.problem) for s in decoded] == [
        (f"streams[{i}]", labels, list(entries), None)
        for i, (labels, entries) in enumerate(streams)
    ]


async def test_an_idempotency_key_replays_the_204(client, tenant, pool):
    headers = {**basic(tenant), **JSON, "idempotency-key": f"push-{uuid.uuid4()}"}
    first = await client.post(URL, content=_one_line(), headers=headers)
    again = await client.post(URL, content=_one_line(), headers=headers)
    assert (first.status_code, first.content, first.headers.get("idempotent-replayed")) == (
        204,
        b"",
        None,
    )
    assert (again.status_code, again.content, again.headers.get("idempotent-replayed")) == (
        204,
        b"",
        "true",
    )
    assert await count(pool, tenant) == 1
