"""The headers every response carries: nosniff everywhere; no-store and Vary on the auth headers
on every API response (a cache keyed on the URL must not serve one tenant's logs to another)."""

from __future__ import annotations

import pytest

API = {
    "cache-control": "no-store",
    "vary": "Authorization, Gram-Key, Gram-Project",
    "x-content-type-options": "nosniff",
}


@pytest.mark.parametrize(
    ("method", "path", "with_key"),
    [
        ("GET", "/rpc/logs.listToolExecutionLogs", True),  # 200
        ("GET", "/rpc/logs.listToolExecutionLogs", False),  # 401
        ("GET", "/rpc/logs.histogram", True),
        ("GET", "/rpc/logs.export", True),
        ("POST", "/rpc/logs.ingest", True),  # 400 (no body)
        ("GET", "/functions/server/00000000-0000-4000-8000-000000000001/logs", False),
        ("GET", "/healthz", False),
        ("GET", "/openapi.json", False),
        ("GET", "/no/such/route", False),  # 404
        ("PUT", "/healthz", False),  # 405
        ("GET", "/viewer/no-such-file.js", False),  # a 404 under the viewer's files
    ],
)
async def test_every_api_response_carries_the_headers(client, tenant, method, path, with_key):
    headers = tenant.headers() if with_key else {}
    # The live tail's are checked in test_tail.py (through a real server: a stream).
    r = await client.request(method, path, headers=headers)
    got = {name: r.headers.get(name) for name in API}
    assert got == API, (r.status_code, got)


async def test_a_handlers_cache_control_is_replaced_on_the_api(client, tenant):
    r = await client.get("/rpc/logs.listToolExecutionLogs", headers=tenant.headers())
    assert r.headers.get_list("cache-control") == ["no-store"]
    assert r.headers.get_list("vary") == ["Authorization, Gram-Key, Gram-Project"]


@pytest.mark.parametrize("path", ["/", "/viewer/js/main.js"])
async def test_the_viewers_files_keep_their_revalidation(client, path):
    r = await client.get(path)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers.get_list("x-content-type-options") == ["nosniff"]
    assert "vary" not in r.headers


def test_answers_sent_before_the_application_carry_them_too(serve):
    with serve(GRAMLOGS_MAX_URL_BYTES="100") as server:
        raw = server.raw(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head = raw.split(b"\r\n\r\n", 1)[0].decode().lower().split("\r\n")
    assert head[0].startswith("http/1.1 414")
    got = {name: value for name, _, value in (line.partition(": ") for line in head[1:])}
    assert {name: got.get(name) for name in API} == {k: v.lower() for k, v in API.items()}
