"""Keys: hashed at rest, compared in constant time, never logged, refused once revoked."""

from __future__ import annotations

import base64
import hashlib
import inspect
import logging

from gramlogs.core.keys import hash_key
from gramlogs.storage import access, tenants
from gramlogs.web import gram
from tests._support import app_client, key_answers_expire

URL = "/rpc/logs.listToolExecutionLogs"


async def test_a_revoked_key_is_refused_once_the_key_cache_bound_has_passed(
    app, client, make_tenant, pool
):
    tenant = await make_tenant()
    assert (await client.get(URL, headers=tenant.headers())).status_code == 200
    async with pool.acquire() as conn:
        key_id = await conn.fetchval(
            "SELECT id FROM api_keys WHERE key_hash = $1", hash_key(tenant.consumer_key)
        )
        assert await tenants.revoke_key(conn, key_id)
    # Within the bound the worker reuses its answer (no round trip for the key) ...
    assert (await client.get(URL, headers=tenant.headers())).status_code == 200
    key_answers_expire(app)
    # ... and past it, the key is looked up again and refused.
    r = await client.get(URL, headers=tenant.headers())
    assert r.status_code == 401
    assert r.json() == {
        "name": "unauthorized",
        "id": r.headers["x-request-id"],
        "message": "invalid or revoked API key",
        "temporary": False,
        "timeout": False,
        "fault": False,
    }
    assert (await client.get(URL, headers=tenant.headers(producer=True))).status_code == 200


async def test_keys_are_stored_only_as_their_sha256(make_tenant, pool):
    tenant = await make_tenant()
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT k.* FROM api_keys k JOIN projects p ON p.organization_id = k.organization_id"
            " WHERE p.id = $1",
            tenant.project_id,
        )
    stored = {row["key_hash"] for row in rows}
    assert stored == {hash_key(tenant.consumer_key), hash_key(tenant.producer_key)}
    for row in rows:
        text = " ".join(str(v) for v in row.values())
        assert tenant.consumer_key not in text and tenant.producer_key not in text
        assert len(row["key_prefix"]) == len("glk_") + 6


def test_the_hash_is_compared_in_constant_time():
    # The row is found by its hash (an index probe on a SHA-256 says nothing useful about the
    # key); the comparison that decides is hmac.compare_digest.
    assert "hmac.compare_digest(" in inspect.getsource(access.KeyCache.lookup)


def forms_of(key: str) -> list[str]:
    digest = hashlib.sha256(key.encode()).digest()
    return [
        key,
        key[len("glk_") :],
        digest.hex(),
        base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode(),
        repr(digest),
    ]


async def test_keys_never_reach_the_logs(database_url, make_tenant, caplog, monkeypatch):
    tenant = await make_tenant()
    other = await make_tenant()
    unknown = "glk_" + "A" * 43
    caplog.set_level(logging.DEBUG)
    async with app_client(database_url, rate_limit=0.01, rate_limit_burst=3) as client:
        await client.get(URL, headers=tenant.headers())  # 200
        await client.get(URL, params={"per_page": "0"}, headers=tenant.headers())  # 400
        await client.get(URL, headers={**tenant.headers(), "Gram-Project": other.slug + "x"})
        await client.get(URL, headers=tenant.headers())  # 429
        await client.get(URL, headers={"Gram-Key": unknown, "Gram-Project": tenant.slug})  # 401
        await client.get(URL, headers={"Gram-Key": f"Bearer {other.consumer_key}"})  # 401

        async def broken(conn, req):
            raise RuntimeError("boom")

        monkeypatch.setattr(gram, "fetch_page", broken)
        r = await client.get(URL, headers=other.headers(producer=True))  # 500
        assert r.status_code == 500
    text = caplog.text + "\n".join(str(rec.__dict__) for rec in caplog.records)
    assert "gramlogs.access" in text
    for key in (tenant.consumer_key, other.consumer_key, other.producer_key, unknown):
        for form in forms_of(key):
            assert form not in text
