"""``gramlogs serve`` as a real process: request limits, slow clients, SIGTERM drain.

Each test starts the server in a subprocess on a free loopback port against the test database.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testkit.serve import live_server
from tests._support import wait_for_lock_waiters

URL = "/rpc/logs.listToolExecutionLogs"


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    settings = {
        "GRAMLOGS_HEADER_TIMEOUT_S": "0.5",
        "GRAMLOGS_BODY_TIMEOUT_S": "0.5",
        "GRAMLOGS_MAX_URL_BYTES": "4096",
        "GRAMLOGS_MAX_HEADER_BYTES": "8192",
    }
    with live_server(database_url, tmp_path_factory.mktemp("server"), settings=settings) as s:
        yield s


def response(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return status, headers, json.loads(body)


def refused(status: int, name: str, message: str, raw: bytes, *, temporary: bool = False) -> None:
    got_status, headers, body = response(raw)
    assert got_status == status
    assert headers["connection"] == "close"
    assert body == {
        "name": name,
        "id": headers["x-request-id"],
        "message": message,
        "temporary": temporary,
        "timeout": temporary,
        "fault": False,
    }


def assert_healthy(server) -> None:
    r = httpx.get(server.url + "/healthz", timeout=10)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_an_oversized_request_target_is_a_414(server):
    raw = server.raw(b"GET /healthz?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    refused(414, "uri_too_long", "the request target is longer than 4096 bytes", raw)
    assert_healthy(server)


def test_oversized_headers_are_a_431(server):
    raw = server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
    refused(431, "headers_too_large", "the request headers are larger than 8192 bytes", raw)
    assert_healthy(server)


def test_many_small_headers_count_together(server):
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(200))
    raw = server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    refused(431, "headers_too_large", "the request headers are larger than 8192 bytes", raw)


def test_nul_in_a_header_is_a_400(server):
    raw = server.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nGram-Project: a\x00b\r\n\r\n")
    refused(400, "bad_request", "the request is not valid HTTP/1.1", raw)
    assert_healthy(server)


def test_garbage_is_a_400(server):
    raw = server.raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
    refused(400, "bad_request", "the request is not valid HTTP/1.1", raw)


def test_raw_non_ascii_bytes_in_the_request_target_are_refused_by_the_parser(server):
    raw = server.raw(b"GET " + URL.encode() + b"?instance=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
    refused(400, "bad_request", "the request is not valid HTTP/1.1", raw)
    assert_healthy(server)


def test_percent_encoded_invalid_utf8_is_a_400_naming_the_parameter(server):
    head = b"GET " + URL.encode() + b"?instance=%FF%00 HTTP/1.1\r\nHost: x\r\n"
    raw = server.raw(head + b"Gram-Key: glk_x\r\nGram-Project: p\r\nConnection: close\r\n\r\n")
    status, headers, body = response(raw)
    assert status == 400
    assert body == {
        "name": "invalid_format",
        "id": headers["x-request-id"],
        "message": "instance must be formatted as UTF-8 text without NUL characters"
        ' but got value "\ufffd\ufffd"',
        "temporary": False,
        "timeout": False,
        "fault": False,
    }
    assert_healthy(server)


def test_a_client_that_sends_nothing_is_dropped_with_a_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        raw = s.recv(65536)
    refused(
        408, "request_timeout", "the request headers did not arrive in time", raw, temporary=True
    )


def test_slow_loris_headers_are_cut_off_with_a_408(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        chunks = []
        for _ in range(100):  # one header byte every 50 ms: never done within 0.5 s
            try:
                s.sendall(b"X")
            except OSError:
                break
            time.sleep(0.05)
        while chunk := s.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    refused(
        408, "request_timeout", "the request headers did not arrive in time", raw, temporary=True
    )
    assert_healthy(server)


def test_a_body_that_stops_coming_is_dropped(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        chunks = []
        while chunk := s.recv(65536):  # returns b"" once the server closes the connection
            chunks.append(chunk)
    assert_healthy(server)


def test_keep_alive_connections_serve_several_requests(server):
    with httpx.Client(base_url=server.url) as c:
        ids = {c.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_refusals_are_counted(server):
    server.raw(b"GET /healthz?" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    text = httpx.get(server.url + "/metrics").text
    assert 'gramlogs_http_refused_total{reason="uri_too_long"}' in text


def test_access_log_is_json_lines_on_stdout_without_keys(server):
    r = httpx.get(server.url + "/healthz", headers={"Gram-Key": "glk_secret_key_here"})
    rid = r.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while rid not in server.stdout.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(x) for x in server.stdout.read_text().splitlines() if x.startswith("{")]
    [line] = [line for line in lines if line["id"] == rid]
    assert line["route"] == "/healthz" and line["status"] == 200
    assert "glk_secret_key_here" not in server.logs()


async def until_refused(port: int, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return
        writer.close()
        await asyncio.sleep(0.05)
    raise AssertionError(f"the server still accepts connections after {limit} s")


async def test_sigterm_drains_in_flight_requests_then_closes_the_pool(
    database_url, make_tenant, pool, tmp_path
):
    tenant = await make_tenant()
    settings = {"GRAMLOGS_STATEMENT_TIMEOUT_MS": "60000", "GRAMLOGS_SHUTDOWN_TIMEOUT_S": "60"}
    with live_server(database_url, tmp_path, settings=settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            async with pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                await conn.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
                try:
                    in_flight = asyncio.create_task(client.get(URL, headers=tenant.headers()))
                    await wait_for_lock_waiters(pool)
                    server.process.send_signal(signal.SIGTERM)
                    await until_refused(server.port)  # no new connections from here on
                    assert server.process.poll() is None  # still draining
                finally:
                    await tx.rollback()
            r = await in_flight
        code = await asyncio.to_thread(server.process.wait, 60)
    assert r.status_code == 200
    assert r.headers["connection"] == "close"
    assert r.json() == {
        "logs": [],
        "pagination": {"per_page": 20, "has_next_page": False, "has_prev_page": False},
    }
    assert code == 0
    errors = server.stderr.read_text()
    assert errors.index("Shutting down") < errors.index("database pool closed")
    access = [json.loads(x) for x in server.stdout.read_text().splitlines() if x[:1] == "{"]
    [line] = [line for line in access if line["id"] == r.headers["x-request-id"]]
    assert line["status"] == 200


def healthz_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {"route": "/healthz", "method": "GET", "status": "200"}
            if sample.name == "gramlogs_http_requests_total" and sample.labels == labels:
                return sample.value
    return 0.0


def test_metrics_sum_the_workers(database_url, tmp_path):
    with live_server(database_url, tmp_path, GRAMLOGS_WORKERS="2") as server:
        # live_server returns once one worker answers; the other may still be starting.
        deadline = time.monotonic() + 60
        while server.logs().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, server.logs()
            time.sleep(0.05)
        before = healthz_count(httpx.get(server.url + "/metrics").text)
        for _ in range(20):  # new connections: the kernel spreads them over the workers
            assert httpx.get(server.url + "/healthz").status_code == 200
        counts = {healthz_count(httpx.get(server.url + "/metrics").text) for _ in range(6)}
        pids = {
            line.split("[")[1].split("]")[0]
            for line in server.logs().splitlines()
            if "Started server process" in line
        }
        access = [json.loads(x) for x in server.stdout.read_text().splitlines() if x[:1] == "{"]
    assert counts == {before + 20}
    assert len(pids) == 2
    # Every worker writes its access-log lines (logging is configured in each of them).
    assert sum(1 for line in access if line["route"] == "/healthz") >= 20
