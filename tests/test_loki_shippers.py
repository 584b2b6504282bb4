"""POST /loki/api/v1/push with real Loki clients nobody here wrote, against a real server process:
python-logging-loki (JSON) and winston-loki (protobuf + snappy, and JSON), read back through the
Gram API."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import logging_loki  # type: ignore[import-untyped]
import pytest

from gramlogs.core import ids
from gramlogs.web.loki.streams import NAMESPACE

PUSH = "/loki/api/v1/push"
LIST = "/rpc/logs.listToolExecutionLogs"
ROOT = Path(__file__).resolve().parent.parent
WINSTON = ROOT / "testkit" / "winston_loki.js"


@pytest.fixture(scope="module")
def server(serve) -> Iterator[Any]:
    with serve() as s:
        yield s


async def read_all(client, tenant) -> list[dict[str, Any]]:
    r = await client.get(LIST, params={"sort": "asc", "per_page": "100"}, headers=tenant.headers())
    assert r.status_code == 200, r.text
    logs: list[dict[str, Any]] = r.json()["logs"]
    return logs


def when(log: dict[str, Any]) -> datetime:
    return ids.parse_rfc3339(log["timestamp"])


def function_of(service: str) -> str:
    return str(uuid.uuid5(NAMESPACE, service))


def _log_through_python_logging_loki(url: str, auth: tuple[str, str]) -> None:
    handler = logging_loki.LokiHandler(
        url=url, tags={"application": "py-shop", "env": "test"}, auth=auth, version="1"
    )
    failures: list[logging.LogRecord] = []
    handler.handleError = failures.append
    logger = logging.getLogger(f"gramlogs.tests.loki.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        logger.debug("cache miss key=%s", "k1")
        logger.info("order placed")
        logger.warning("slow upstream: %dms", 1200)
        logger.error("payment declined ü")
    finally:
        handler.close()
    assert not failures, [f.getMessage() for f in failures]


async def test_python_logging_loki_ships_lines_that_read_back_exactly(client, server, make_tenant):
    tenant = await make_tenant()
    before = datetime.now(UTC)
    await asyncio.to_thread(
        _log_through_python_logging_loki, server.url + PUSH, (tenant.slug, tenant.producer_key)
    )
    after = datetime.now(UTC)
    # The client stamps each line with its own clock: on a coarse clock two lines may share a
    # millisecond, so the lines are compared in the order they were logged, not as listed.
    order = ["cache miss key=k1", "order placed", "slow upstream: 1200ms", "payment declined ü"]
    logs = sorted(await read_all(client, tenant), key=lambda log: order.index(log["raw_log"]))
    assert [(log["level"], log["raw_log"]) for log in logs] == [
        ("debug", "cache miss key=k1"),
        ("info", "order placed"),
        ("warn", "slow upstream: 1200ms"),
        ("error", "payment declined ü"),
    ]
    function = function_of("py-shop")
    for log in logs:
        assert (log["function_id"], log["source"], log["instance"]) == (function, "stdout", "")
        # The client stamps each line with time.time() when it sends it.
        assert before - timedelta(seconds=1) <= ids.parse_rfc3339(log["timestamp"]) <= after
        labels = json.loads(log["attributes"])["labels"]
        assert labels["application"] == "py-shop"
        assert labels["service_name"] == "py-shop"
        assert labels["env"] == "test"
        assert labels["logger"].startswith("gramlogs.tests.loki.")
    assert [json.loads(log["attributes"])["labels"]["severity"] for log in logs] == [
        "debug",
        "info",
        "warning",
        "error",
    ]


async def _winston(spec: dict[str, Any]) -> None:
    node = shutil.which("node")
    assert node is not None, "the winston-loki test needs Node >= 20 on PATH"
    assert (ROOT / "node_modules" / "winston-loki").is_dir(), (
        "run `npm ci` in the repository (make lint does): winston-loki is a devDependency"
    )
    process = await asyncio.create_subprocess_exec(
        node,
        str(WINSTON),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(spec).encode()), 60)
    assert process.returncode == 0, (out + err).decode()


LINES = [
    ("debug", "cache warmed", "2025-03-01T10:00:00.001Z"),
    ("info", "GET /orders 200 12ms", "2025-03-01T10:00:00.002Z"),
    ("warn", "retrying upstream", "2025-03-01T10:00:01.500Z"),
    ("error", '{"err":"boom","code":7} ✓', "2025-03-01T10:00:02.000Z"),
]


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_winston_loki_ships_lines_that_read_back_exactly(
    client, server, make_tenant, encoding
):
    tenant = await make_tenant()
    spec = {
        "host": server.url,
        "user": tenant.slug,
        "password": tenant.producer_key,
        "labels": {"app": "node-shop", "host": "web-1"},
        "json": encoding == "json",
        "lines": [
            {"level": level, "message": message, "timestamp": ts} for level, message, ts in LINES
        ],
    }
    await _winston(spec)
    logs = await read_all(client, tenant)
    assert [
        (when(log), log["level"], log["raw_log"], log["instance"], log["source"]) for log in logs
    ] == [
        (datetime.fromisoformat(ts), level, message, "web-1", "stdout")
        for level, message, ts in LINES
    ]
    function = function_of("node-shop")
    assert {log["function_id"] for log in logs} == {function}
    assert {log["deployment_id"] for log in logs} == {
        str(uuid.uuid5(NAMESPACE, "deployment:" + function))
    }
    for log, (level, _, _) in zip(logs, LINES, strict=True):
        attributes = json.loads(log["attributes"])
        assert attributes.pop("labels") == {
            "app": "node-shop",
            "host": "web-1",
            "service_name": "node-shop",
        }
        # Its JSON sends the log's other fields (here only winston's level) as structured
        # metadata; its protobuf sends none.
        assert attributes == ({"level": level} if encoding == "json" else {})
