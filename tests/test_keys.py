"""Key scopes: each is a set of permissions, and every route asks for the one it needs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from gramlogs.core import ids
from gramlogs.core.errors import Forbidden
from gramlogs.core.keys import KeyHolder, KeyScope, Permission
from gramlogs.storage import functions, tenants, writer
from tests._support import app_client

READ, WRITE, DELETE = Permission.READ, Permission.WRITE, Permission.DELETE
TS = datetime(2025, 6, 1, 10, 30, tzinfo=UTC)
DEPLOYMENT = uuid.UUID(int=7)
WINDOW = {"ts_start": "2025-06-01T10:00:00Z", "ts_end": "2025-06-01T11:00:00Z"}


@dataclass(frozen=True)
class Project:
    organization_id: uuid.UUID
    project_id: uuid.UUID
    slug: str
    function_id: uuid.UUID

    def gram(self, key: str) -> dict[str, str]:
        return {"Gram-Key": key, "Gram-Project": self.slug}


Reply = tuple[int, dict[str, object] | None]  # the status; the body when it is an error
Send = Callable[[httpx.AsyncClient, Project, str], Awaitable[Reply]]


def _reply(r: httpx.Response) -> Reply:
    return r.status_code, (r.json() if r.status_code >= 400 else None)


async def _list(client: httpx.AsyncClient, p: Project, key: str) -> Reply:
    return _reply(await client.get("/rpc/logs.listToolExecutionLogs", headers=p.gram(key)))


async def _export(client: httpx.AsyncClient, p: Project, key: str) -> Reply:
    return _reply(await client.get("/rpc/logs.export", headers=p.gram(key)))


async def _histogram(client: httpx.AsyncClient, p: Project, key: str) -> Reply:
    return _reply(await client.get("/rpc/logs.histogram", params=WINDOW, headers=p.gram(key)))


async def _tail(client: httpx.AsyncClient, p: Project, key: str) -> Reply:
    # In-process, a response is whole before the client sees it: this client's app ends a
    # tail at once (tail_max_s), so that one that opens returns.
    async with client.stream("GET", "/rpc/logs.tail", headers=p.gram(key)) as r:
        if r.status_code != 200:
            await r.aread()
            return _reply(r)
        return r.status_code, None


async def _poly_get(client: httpx.AsyncClient, p: Project, key: str) -> Reply:
    url = f"/functions/server/{p.function_id}/system-logs"
    return _reply(await client.get(url, headers={"Authorization": f"Bearer {key}"}))


async def _ingest(client: httpx.AsyncClient, p: Project, key: str) -> Reply:
    entry = {"raw_log": "hi", "function_id": str(p.function_id), "deployment_id": str(DEPLOYMENT)}
    return _reply(await client.post("/rpc/logs.ingest", json=[entry], headers=p.gram(key)))


async def _otlp(client: httpx.AsyncClient, p: Project, key: str) -> Reply:
    return _reply(await client.post("/v1/logs", json={}, headers=p.gram(key)))


async def _poly_delete(client: httpx.AsyncClient, p: Project, key: str) -> Reply:
    url = f"/functions/server/{p.function_id}/logs"
    return _reply(await client.delete(url, headers={"Authorization": f"Bearer {key}"}))


ROUTES: dict[str, tuple[Permission, Send]] = {
    "list": (READ, _list),
    "export": (READ, _export),
    "histogram": (READ, _histogram),
    "tail": (READ, _tail),
    "poly GET": (READ, _poly_get),
    "ingest": (WRITE, _ingest),
    "OTLP": (WRITE, _otlp),
    "poly DELETE": (DELETE, _poly_delete),
}
GRANTS = {
    KeyScope.CONSUMER: {READ},
    KeyScope.INGEST: {WRITE},
    KeyScope.ADMIN: {READ, WRITE, DELETE},
    # Keys made before ingest and admin existed keep all they could do.
    KeyScope.PRODUCER: {READ, WRITE, DELETE},
}


def forbidden_body(message: str) -> dict[str, object]:
    return {
        "name": "forbidden",
        "message": message,
        "temporary": False,
        "timeout": False,
        "fault": False,
    }


async def _project(pool, bound: bool, scope: KeyScope) -> tuple[Project, str]:
    """A new organization with a project holding one line of a function, and a key of ``scope``
    (bound to the project, or org-wide)."""
    async with pool.acquire() as conn:
        org = await tenants.create_organization(conn, f"keys-{uuid.uuid4().hex[:8]}")
        project = await tenants.create_project(conn, org, "p")
        function = uuid.uuid4()
        record = (ids.new_id(TS), TS, "i", "info", "function", "a line", None, "{}")
        await writer.copy_lines(conn, [(*record, project, DEPLOYMENT, function, None)])
        await functions.register_functions(conn, project, [function])
        key = await tenants.create_key(conn, org, scope, project_id=project if bound else None)
    return Project(org, project, "p", function), key.key


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("scope", list(KeyScope))
@pytest.mark.parametrize("bound", [False, True], ids=["org-wide", "bound"])
async def test_a_key_may_use_exactly_the_routes_its_scope_grants(
    client, pool, database_url, scope: KeyScope, route: str, bound: bool
):
    needed, send = ROUTES[route]
    project, key = await _project(pool, bound, scope)
    if route == "tail":
        async with app_client(database_url, tail_max_s=0.01) as short:
            status, body = await send(short, project, key)
    else:
        status, body = await send(client, project, key)
    if needed in GRANTS[scope]:
        assert (status, body) == (200, None)
    else:
        assert body is not None and isinstance(body.pop("id"), str)
        message = f"this key has scope {scope.value!r}, which lacks the {needed.value!r} permission"
        assert (status, body) == (403, forbidden_body(message))


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_poly_refuses_a_missing_permission_before_looking_the_function_up(
    client, pool, method: str
):
    """The same 403 for a function that exists and one that does not: no existence oracle."""
    scope, needed = (KeyScope.INGEST, READ) if method == "GET" else (KeyScope.CONSUMER, DELETE)
    project, key = await _project(pool, False, scope)
    message = f"this key has scope {scope.value!r}, which lacks the {needed.value!r} permission"
    for function in (project.function_id, uuid.uuid4()):
        for path in ("logs", "system-logs"):
            r = await client.request(
                method,
                f"/functions/server/{function}/{path}",
                headers={"Authorization": f"Bearer {key}"},
            )
            body = r.json()
            assert isinstance(body.pop("id"), str)
            assert (r.status_code, body) == (403, forbidden_body(message))


def test_each_scope_grants_its_permissions_and_no_other():
    for scope, granted in GRANTS.items():
        assert scope.permissions == granted
        holder = KeyHolder(uuid.uuid4(), scope, uuid.uuid4(), None)
        for permission in Permission:
            assert scope.allows(permission) == (permission in granted)
            if permission in granted:
                holder.require(permission)
            else:
                with pytest.raises(Forbidden, match=f"lacks the '{permission.value}' permission"):
                    holder.require(permission)
