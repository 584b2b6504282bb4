"""Every request gets an id (header, error body, log line), one JSON access-log line and metrics."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gramlogs.web import gram

URL = "/rpc/logs.listToolExecutionLogs"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "gramlogs.access"]


def without_timing(line: dict) -> dict:
    assert line.pop("duration_ms") >= 0
    assert line.pop("ts").endswith("Z")
    return line


async def test_success_has_request_id_header_and_one_access_line(client, make_tenant, caplog):
    tenant = await make_tenant("observed")
    caplog.set_level(logging.INFO, logger="gramlogs.access")
    r = await client.get(URL, headers=tenant.headers())
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert len(rid) == 12
    assert [without_timing(line) for line in access_lines(caplog)] == [
        {
            "id": rid,
            "method": "GET",
            "route": URL,
            "path": URL,
            "status": 200,
            "project": "observed",
            "client": "127.0.0.1",
        }
    ]


async def test_error_body_id_is_the_request_id_and_is_logged(client, make_tenant, caplog):
    tenant = await make_tenant()
    caplog.set_level(logging.INFO, logger="gramlogs.access")
    r = await client.get(URL, params={"per_page": "101"}, headers=tenant.headers())
    assert r.status_code == 400
    rid = r.headers["x-request-id"]
    assert r.json() == {
        "name": "invalid_range",
        "id": rid,
        "message": "per_page must be lesser or equal than 100 but got value 101",
        "temporary": False,
        "timeout": False,
        "fault": False,
    }
    [line] = access_lines(caplog)
    assert (line["id"], line["status"], line["error"]) == (rid, 400, "invalid_range")


async def test_request_ids_are_unique(client):
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(50)}
    assert len(ids) == 50


async def test_unknown_route_is_logged_under_one_label(client, caplog):
    caplog.set_level(logging.INFO, logger="gramlogs.access")
    r = await client.get("/no/such/thing")
    assert r.status_code == 404
    assert r.json()["id"] == r.headers["x-request-id"]
    [line] = access_lines(caplog)
    assert (line["route"], line["path"], line["status"]) == ("<unmatched>", "/no/such/thing", 404)


async def test_wrong_method_is_logged_under_its_route_template(client, caplog):
    caplog.set_level(logging.INFO, logger="gramlogs.access")
    r = await client.post(URL)
    assert r.status_code == 405
    assert r.json()["name"] == "method_not_allowed"
    [line] = access_lines(caplog)
    assert (line["route"], line["method"], line["error"]) == (URL, "POST", "method_not_allowed")


async def test_unexpected_exception_is_a_500_with_the_request_id(
    client, make_tenant, caplog, monkeypatch
):
    async def broken(conn, req):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(gram, "fetch_page", broken)
    tenant = await make_tenant()
    caplog.set_level(logging.INFO)
    r = await client.get(URL, headers=tenant.headers())
    rid = r.headers["x-request-id"]
    assert r.status_code == 500
    assert r.json() == {
        "name": "unexpected",
        "id": rid,
        "message": "an unexpected error occurred; the server log has the details",
        "temporary": False,
        "timeout": False,
        "fault": True,
    }
    [error] = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert rid in error.getMessage()
    assert error.exc_info is not None and "secret internals" in str(error.exc_info[1])
    [line] = access_lines(caplog)
    assert (line["id"], line["status"], line["error"]) == (rid, 500, "unexpected")


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


async def test_metrics_count_requests_by_route_template_and_status(client, make_tenant):
    tenant = await make_tenant()
    before = (await client.get("/metrics")).text
    await client.get(URL, headers=tenant.headers())
    await client.get(URL, headers=tenant.headers())
    await client.get(URL, params={"level": "loud"}, headers=tenant.headers())
    await client.get("/functions/server/123/nothing")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = r.text
    ok = {"route": URL, "method": "GET", "status": "200"}
    bad = {"route": URL, "method": "GET", "status": "400"}
    unmatched = {"route": "<unmatched>", "method": "GET", "status": "404"}
    total = "gramlogs_http_requests_total"
    assert sample(after, total, **ok) - sample(before, total, **ok) == 2
    assert sample(after, total, **bad) - sample(before, total, **bad) == 1
    assert sample(after, total, **unmatched) - sample(before, total, **unmatched) == 1
    count = "gramlogs_http_request_duration_seconds_count"
    assert sample(after, count, route=URL) - sample(before, count, route=URL) == 3
    assert sample(after, "gramlogs_db_pool_max_connections") >= 1
    assert sample(after, "gramlogs_db_pool_connections") >= 1
    assert "gramlogs_db_pool_connections_in_use" in after
    assert "gramlogs_http_requests_created" not in after


async def test_made_up_methods_share_one_label(client):
    for i in range(5):
        r = await client.request(f"BREW{i}", "/healthz")
        assert r.status_code == 405
    text = (await client.get("/metrics")).text
    assert "BREW" not in text
    total = "gramlogs_http_requests_total"
    labels = {"route": "/healthz", "method": "other", "status": "405"}
    assert sample(text, total, **labels) >= 5


async def test_ingestion_counters_are_exposed(client):
    from gramlogs.core import metrics

    before = (await client.get("/metrics")).text
    metrics.ingested(5)
    metrics.rejected("too_long", 2)
    metrics.rejected("too_long")
    after = (await client.get("/metrics")).text
    name = "gramlogs_ingested_lines_total"
    assert sample(after, name) - sample(before, name) == 5
    name = "gramlogs_rejected_lines_total"
    delta = sample(after, name, reason="too_long") - sample(before, name, reason="too_long")
    assert delta == 3


async def test_access_log_can_be_turned_off(database_url, caplog):
    from tests._support import app_client

    caplog.set_level(logging.INFO, logger="gramlogs.access")
    async with app_client(database_url, access_log=False) as c:
        r = await c.get("/healthz")
    assert r.status_code == 200 and "x-request-id" in r.headers
    assert access_lines(caplog) == []


async def test_healthz_answers_without_the_database(client: httpx.AsyncClient):
    r = await client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_readyz_answers_when_the_database_does(client: httpx.AsyncClient):
    r = await client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})
