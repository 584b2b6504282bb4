"""Tenant isolation, as a property: whatever a key asks for, no response carries another
project's row.

Each example builds a small world of its own (organizations whose projects share slugs, rows
whose function, deployment and instance values are shared across tenants, timestamps that
interleave) and sends random requests: any key (bound, unbound, producer, revoked) with any
slug, and cursors, function ids and deployment ids taken from other tenants.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gramlogs.core import ids
from gramlogs.core.keys import KeyScope
from gramlogs.storage import tenants, writer
from gramlogs.storage.pages import COLUMNS

URL = "/rpc/logs.listToolExecutionLogs"
SLUGS = ("alpha", "beta", "shared")
FUNCTIONS = [uuid.UUID(int=i + 1, version=4) for i in range(3)]
DEPLOYMENTS = [uuid.UUID(int=i + 100, version=4) for i in range(2)]
BASE = datetime(2025, 6, 1, tzinfo=UTC)

row_specs = st.tuples(
    st.integers(0, 10_000_000),  # microseconds after BASE: rows of all tenants interleave
    st.sampled_from(FUNCTIONS),
    st.sampled_from(DEPLOYMENTS),
    st.sampled_from(["i1", "i2"]),
    st.sampled_from(["debug", "info", "warn", "error"]),
)
project_specs = st.lists(row_specs, min_size=1, max_size=12)
org_specs = st.dictionaries(st.sampled_from(SLUGS), project_specs, min_size=1, max_size=3)
world_specs = st.lists(org_specs, min_size=2, max_size=3)


@dataclass
class Key:
    secret: str
    org: int
    bound: uuid.UUID | None = None
    revoked: bool = False


@dataclass
class World:
    projects: dict[tuple[int, str], uuid.UUID] = field(default_factory=dict)  # (org, slug)
    rows: dict[uuid.UUID, dict[str, dict]] = field(default_factory=dict)  # project -> id -> row
    keys: list[Key] = field(default_factory=list)

    def readable(self, key: Key, slug: str) -> uuid.UUID | None:
        project = self.projects.get((key.org, slug))
        if key.revoked or project is None or (key.bound and key.bound != project):
            return None
        return project

    def all_row_ids(self) -> list[uuid.UUID]:
        return [uuid.UUID(i) for rows in self.rows.values() for i in rows]


async def build(conn, spec: list[dict[str, list]]) -> World:
    world = World()
    for org_index, projects in enumerate(spec):
        org = await tenants.create_organization(conn, f"iso-{secrets.token_hex(4)}")
        for slug, rows in projects.items():
            project = await tenants.create_project(conn, org, slug)
            world.projects[(org_index, slug)] = project
            records = []
            for micros, function, deployment, instance, level in rows:
                ts = BASE + timedelta(microseconds=micros)
                record = (
                    *(ids.new_id(ts), ts, instance, level, "function", f"line {micros}"),
                    *(None, "{}", project, deployment, function, None),
                )
                records.append(record)
            await writer.copy_lines(conn, records)
            world.rows[project] = {str(r[0]): dict(zip(COLUMNS, r, strict=True)) for r in records}
        first = world.projects[(org_index, next(iter(projects)))]
        for scope, bound, revoked in [
            (KeyScope.CONSUMER, None, False),
            (KeyScope.PRODUCER, None, False),
            (KeyScope.CONSUMER, first, False),
            (KeyScope.CONSUMER, None, True),
        ]:
            created = await tenants.create_key(conn, org, scope, project_id=bound)
            if revoked:
                await tenants.revoke_key(conn, created.id)
            world.keys.append(Key(created.key, org_index, bound, revoked))
    return world


requests = st.lists(
    st.fixed_dictionaries(
        {
            "key": st.integers(0, 11),
            "slug": st.sampled_from((*SLUGS, "nowhere")),
            "cursor": st.one_of(st.none(), st.integers(0, 1000), st.uuids()),
            "function_id": st.sampled_from([None, None, None, *FUNCTIONS]),
            "deployment_id": st.sampled_from([None, None, None, *DEPLOYMENTS]),
            "per_page": st.integers(1, 5),
            "sort": st.sampled_from(["asc", "desc"]),
            "direction": st.sampled_from(["next", "prev"]),
        }
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=30,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spec=world_specs, reqs=requests)
async def test_no_response_contains_another_projects_row(client, pool, spec, reqs):
    async with pool.acquire() as conn:
        world = await build(conn, spec)
    every_id = world.all_row_ids()
    for req in reqs:
        key = world.keys[req["key"] % len(world.keys)]
        params = {k: str(v) for k, v in req.items() if k not in ("key", "slug", "cursor") and v}
        cursor = req["cursor"]
        if isinstance(cursor, int):
            cursor = every_id[cursor % len(every_id)] if every_id else None
        if cursor is not None:
            params["cursor"] = str(cursor)
        headers = {"Gram-Key": key.secret, "Gram-Project": req["slug"]}
        r = await client.get(URL, params=params, headers=headers)
        event(f"status {r.status_code}, with rows: {bool(r.json().get('logs'))}")

        allowed = world.readable(key, req["slug"])
        expected_status = 200 if allowed else 401 if key.revoked else 403
        assert r.status_code == expected_status, (r.status_code, r.text)
        own = world.rows.get(allowed, {}) if allowed else {}
        if r.status_code == 200:
            for row in r.json()["logs"]:
                assert row["project_id"] == str(allowed)
                stored = own[row["id"]]  # KeyError: a row that is not this project's
                assert row["raw_log"] == stored["raw_log"]
                assert row["function_id"] == str(stored["function_id"])
        # Nothing else of any other project shows anywhere in the response, rows or cursors
        # (a cursor the client sent may be echoed back: it is the client's own input).
        text = r.text
        for project, rows in world.rows.items():
            if project == allowed:
                continue
            assert str(project) not in text
            for row_id in rows:
                assert row_id == str(cursor) or row_id not in text
        json.loads(text)
