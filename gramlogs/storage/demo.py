"""The first-run demo: an organization, a project, two keys and a few thousand log lines.

Keys are stored hashed, so the demo keeps its two plaintext keys in ``<data_dir>/demo-keys.json``
(mode 0600) to print a working ``curl`` line on every start. Only the embedded, local setup does
this; a configured database never gets demo data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from gramlogs.core.keys import Scope
from gramlogs.storage import tenants
from gramlogs.storage.seed import SeedPlan, seed_logs

__all__ = ["Demo", "ensure_demo"]

DEMO_SLUG = "demo"
DEMO_ROWS = 5000
# Ids for the banner's ingestion example; any uuids would do (a new function registers itself).
DEMO_FUNCTION = "0193a5b0-0000-7000-8000-00000000f001"
DEMO_DEPLOYMENT = "0193a5b0-0000-7000-8000-00000000d001"


@dataclass(frozen=True)
class Demo:
    created: bool
    project_slug: str
    consumer_key: str | None
    producer_key: str | None


async def ensure_demo(conn: asyncpg.Connection, data_dir: Path) -> Demo:
    keys_file = data_dir / "demo-keys.json"
    if await conn.fetchval("SELECT count(*) FROM organizations") > 0:
        saved = json.loads(keys_file.read_text()) if keys_file.exists() else {}
        return Demo(False, DEMO_SLUG, saved.get("consumer"), saved.get("producer"))
    async with conn.transaction():
        org = await tenants.create_organization(conn, "demo")
        project = await tenants.create_project(conn, org, DEMO_SLUG, "Demo project")
        consumer = await tenants.create_key(conn, org, Scope.CONSUMER, name="demo consumer")
        producer = await tenants.create_key(conn, org, Scope.PRODUCER, name="demo producer")
        await seed_logs(
            conn,
            SeedPlan(project_id=project, rows=DEMO_ROWS, end=datetime.now(UTC), days=3, seed=1),
        )
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"consumer": consumer.key, "producer": producer.key}, f)
    return Demo(True, DEMO_SLUG, consumer.key, producer.key)


def banner(demo: Demo, base_url: str) -> str:
    lines = []
    if demo.created:
        lines.append(f"Created a demo project {demo.project_slug!r} with {DEMO_ROWS:,} log lines.")
    else:
        lines.append("Reusing the existing data in the embedded database (and its demo keys).")
    if demo.consumer_key:
        lines += [
            f"  consumer key: {demo.consumer_key}",
            f"  producer key: {demo.producer_key}",
            "",
            # The key in the fragment, which browsers never send: the page moves it to
            # sessionStorage and out of the address bar at once.
            "Open the log viewer in a browser, signed in as the demo's consumer:",
            f"  {base_url}/#key={demo.consumer_key}&project={demo.project_slug}",
            "",
            "List the newest logs:",
            f'  curl -s "{base_url}/rpc/logs.listToolExecutionLogs?per_page=5"'
            f' -H "Gram-Key: {demo.consumer_key}" -H "Gram-Project: {demo.project_slug}"',
            "",
            "Send a log line (producer key):",
            f'  curl -s -X POST "{base_url}/rpc/logs.ingest"'
            f' -H "Gram-Key: {demo.producer_key}" -H "Gram-Project: {demo.project_slug}"'
            " -H 'Content-Type: application/json'"
            f""" -d '[{{"raw_log": "hello from curl", "function_id": "{DEMO_FUNCTION}","""
            f""" "deployment_id": "{DEMO_DEPLOYMENT}"}}]'""",
            "",
            "Watch lines arrive as they are stored (a live tail; Ctrl-C stops it):",
            f'  curl -sN "{base_url}/rpc/logs.tail?lines=5"'
            f' -H "Gram-Key: {demo.consumer_key}" -H "Gram-Project: {demo.project_slug}"',
        ]
    else:
        lines.append("  (demo keys not found; make one with `gramlogs keys create`)")
    return "\n".join(lines)
