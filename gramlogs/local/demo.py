"""The first-run demo: an organization, a project, three keys and a few thousand log lines.

Keys are stored hashed, so the demo keeps its plaintext keys in ``<data_dir>/demo-keys.json``
(mode 0600) to print working ``curl`` lines on every start. Only the embedded, local setup does
this; a configured database never gets demo data.

The keys: a consumer (reads), an ingest key (writes only: the one to put in a function or a
collector) and an admin key (reads, writes and deletes), the last two bound to the demo project.
A data directory made before ingest and admin keys existed saved a consumer and an org-wide
producer key; its next start adds the two new keys and shows them instead of the producer,
which keeps working as it did.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from gramlogs.core.errors import Unauthorized
from gramlogs.core.keys import KeyScope
from gramlogs.local.seed import SeedPlan, seed_logs
from gramlogs.storage import tenants
from gramlogs.storage.access import identify

__all__ = ["Demo", "banner", "ensure_demo"]

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
    ingest_key: str | None
    admin_key: str | None


async def ensure_demo(conn: asyncpg.Connection, data_dir: Path) -> Demo:
    keys_file = data_dir / "demo-keys.json"
    if await conn.fetchval("SELECT count(*) FROM organizations") > 0:
        saved: dict[str, Any] = json.loads(keys_file.read_text()) if keys_file.exists() else {}
        if saved.get("consumer") and not (saved.get("ingest") and saved.get("admin")):
            added = await _add_bound_keys(conn, saved["consumer"])
            if added:
                saved = {**saved, **added}
                _save(keys_file, saved)
        return Demo(
            False, DEMO_SLUG, saved.get("consumer"), saved.get("ingest"), saved.get("admin")
        )
    async with conn.transaction():
        org = await tenants.create_organization(conn, "demo")
        project = await tenants.create_project(conn, org, DEMO_SLUG, "Demo project")
        consumer = await tenants.create_key(conn, org, KeyScope.CONSUMER, name="demo consumer")
        keys = await _bound_keys(conn, org, project)
        await seed_logs(
            conn,
            SeedPlan(project_id=project, rows=DEMO_ROWS, end=datetime.now(UTC), days=3, seed=1),
        )
    _save(keys_file, {"consumer": consumer.key, **keys})
    return Demo(True, DEMO_SLUG, consumer.key, keys["ingest"], keys["admin"])


async def _bound_keys(
    conn: asyncpg.Connection, org: uuid.UUID, project: uuid.UUID
) -> dict[str, str]:
    ingest = await tenants.create_key(
        conn, org, KeyScope.INGEST, project_id=project, name="demo ingest"
    )
    admin = await tenants.create_key(
        conn, org, KeyScope.ADMIN, project_id=project, name="demo admin"
    )
    return {"ingest": ingest.key, "admin": admin.key}


async def _add_bound_keys(conn: asyncpg.Connection, consumer_key: str) -> dict[str, str]:
    """The ingest and admin keys a data directory of an earlier version lacks, made now in the
    demo's organization and project; none when those are gone (or the consumer was revoked)."""
    try:
        holder = await identify(conn, consumer_key)
        async with conn.transaction():
            project = await tenants.resolve_project(conn, holder.organization_id, DEMO_SLUG)
            return await _bound_keys(conn, holder.organization_id, project)
    except (Unauthorized, tenants.TenantError):
        return {}


def _save(keys_file: Path, keys: dict[str, Any]) -> None:
    fd = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(keys, f)


def banner(demo: Demo, base_url: str) -> str:
    lines = []
    if demo.created:
        lines.append(f"Created a demo project {demo.project_slug!r} with {DEMO_ROWS:,} log lines.")
    else:
        lines.append("Reusing the existing data in the embedded database (and its demo keys).")
    if demo.consumer_key and demo.ingest_key and demo.admin_key:
        lines += [
            f"  consumer key: {demo.consumer_key}",
            f"  ingest key: {demo.ingest_key}",
            f"  admin key: {demo.admin_key}",
            "(consumer: read; ingest: write only, the key to ship logs with; admin: read, write"
            f" and delete; ingest and admin are bound to the project {demo.project_slug!r})",
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
            "Send a log line (ingest key):",
            f'  curl -s -X POST "{base_url}/rpc/logs.ingest"'
            f' -H "Gram-Key: {demo.ingest_key}" -H "Gram-Project: {demo.project_slug}"'
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
