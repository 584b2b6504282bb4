"""Per-key token buckets: 429 in the error shape with Retry-After; off by default."""

from __future__ import annotations

import pytest

from gramlogs.core.config import Config
from gramlogs.core.errors import TooManyRequests
from gramlogs.web.ratelimit import MAX_ADDRESSES, RateLimit, TokenBuckets
from tests._support import app_client, error

URL = "/rpc/logs.listToolExecutionLogs"
POLY = "/functions/server/00000000-0000-4000-8000-000000000001/logs"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate():
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take(b"k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take(b"k") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take(b"k") == 0.0
    assert buckets.take(b"k") == pytest.approx(0.5)
    clock.now += 60
    assert [buckets.take(b"k") for _ in range(4)][-1] == pytest.approx(0.5)


def test_buckets_are_per_key():
    buckets = TokenBuckets(rate=1, burst=1, clock=Clock())
    assert buckets.take(b"a") == 0.0
    assert buckets.take(b"a") > 0
    assert buckets.take(b"b") == 0.0


def test_bucket_memory_is_bounded():
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, max_keys=100, clock=clock)
    for i in range(1000):
        buckets.take(b"%d" % i)
        clock.now += 0.01
        assert len(buckets) <= 100


def test_refilled_buckets_are_pruned_first():
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, max_keys=3, clock=clock)
    buckets.take(b"idle")
    clock.now += 5
    buckets.take(b"busy1")
    buckets.take(b"busy2")
    buckets.take(b"new")  # the table is full: the refilled "idle" goes
    assert len(buckets) == 3
    assert buckets.take(b"busy1") > 0  # kept its state


async def test_over_the_limit_is_a_429_with_retry_after(database_url, make_tenant):
    tenant = await make_tenant()
    other = await make_tenant()
    async with app_client(database_url, rate_limit=0.01, rate_limit_burst=2) as client:
        first = await client.get(URL, headers=tenant.headers())
        second = await client.get(URL, headers=tenant.headers())
        third = await client.get(URL, headers=tenant.headers())
        elsewhere = await client.get(URL, headers=other.headers())
    assert (first.status_code, second.status_code, elsewhere.status_code) == (200, 200, 200)
    assert third.status_code == 429
    assert third.headers["retry-after"] == "100"
    assert third.json() == {
        "name": "too_many_requests",
        "id": third.headers["x-request-id"],
        "message": "rate limit of 0.01 requests per second for this key exceeded; retry in 100 s",
        "temporary": True,
        "timeout": False,
        "fault": False,
    }


async def test_the_limit_follows_the_key_whatever_the_header(database_url, make_tenant):
    tenant = await make_tenant()
    async with app_client(database_url, rate_limit=0.01, rate_limit_burst=1) as client:
        first = await client.get(URL, headers=tenant.headers())
        bearer = {"Gram-Key": f"Bearer {tenant.consumer_key}", "Gram-Project": tenant.slug}
        second = await client.get(URL, headers=bearer)
        # Poly's routes authenticate with Authorization: the same key, the same bucket.
        third = await client.get(POLY, headers={"Authorization": bearer["Gram-Key"]})
    assert [first.status_code, second.status_code, third.status_code] == [200, 429, 429]


async def test_a_decoy_authorization_does_not_dodge_the_gram_key_limit(database_url, make_tenant):
    tenant = await make_tenant()
    async with app_client(database_url, rate_limit=0.01, rate_limit_burst=2) as client:
        statuses = [
            (
                await client.get(
                    URL,
                    headers=[
                        ("Authorization", f"Bearer glk_decoy{i}"),
                        *tenant.headers().items(),
                    ],
                )
            ).status_code
            for i in range(8)
        ]
    assert statuses == [200, 200] + [429] * 6


async def test_a_decoy_gram_key_does_not_dodge_the_poly_limit(database_url, make_tenant):
    tenant = await make_tenant()
    async with app_client(database_url, rate_limit=0.01, rate_limit_burst=2) as client:
        statuses = [
            (
                await client.get(
                    POLY,
                    headers=[
                        ("Gram-Key", f"glk_decoy{i}"),
                        ("Authorization", f"Bearer {tenant.consumer_key}"),
                    ],
                )
            ).status_code
            for i in range(8)
        ]
    # 404: no such function (after the key is checked); then the key's bucket is empty.
    assert statuses == [404, 404] + [429] * 6


async def test_a_key_in_a_header_the_route_ignores_is_not_limited(database_url, make_tenant):
    tenant = await make_tenant()
    decoy = {"Authorization": f"Bearer {tenant.consumer_key}"}
    async with app_client(database_url, rate_limit=0.01, rate_limit_burst=1) as client:
        statuses = [
            (await client.get(URL, headers={**decoy, **tenant.headers()})).status_code,
            (await client.get(URL, headers={**decoy, "Gram-Project": tenant.slug})).status_code,
        ]
    # The second request's only key is in a header the list route does not read: a 401 for
    # the missing Gram-Key, not a 429 spending (or dodging) anyone's tokens.
    assert statuses == [200, 401]


async def test_requests_without_a_key_are_not_limited(database_url):
    async with app_client(database_url, rate_limit=0.01, rate_limit_burst=1) as client:
        statuses = [(await client.get("/healthz")).status_code for _ in range(5)]
    assert statuses == [200] * 5


async def test_rate_limiting_is_off_by_default(client, make_tenant):
    tenant = await make_tenant()
    statuses = {(await client.get(URL, headers=tenant.headers())).status_code for _ in range(30)}
    assert statuses == {200}


# -- failed authentications per client address --------------------------------------------------


async def test_failed_authentications_are_limited_per_address(database_url, make_tenant):
    tenant = await make_tenant()
    # 3 a minute: the fourth within 20 s of the first is refused, however slow the machine.
    async with app_client(database_url, auth_failures_per_minute=3) as client:
        bad = [
            await client.get(URL, headers={"Gram-Key": f"glk_wrong{i}", "Gram-Project": "p"})
            for i in range(5)
        ]
        good = await client.get(URL, headers=tenant.headers())
        keyless = await client.get(URL, headers={"Gram-Project": tenant.slug})
        health = await client.get("/healthz")
    assert [r.status_code for r in bad] == [401, 401, 401, 429, 429]
    assert error(bad[3]) == {
        "name": "too_many_requests",
        "message": "too many failed authentications from this address (more than 3 a minute);"
        f" retry in {bad[3].headers['retry-after']} s",
        "temporary": True,
        "timeout": False,
        "fault": False,
    }
    assert 1 <= int(bad[3].headers["retry-after"]) <= 20
    # Until it refills, the address's requests with a key are refused before any lookup; those
    # without one cost nothing and are answered as ever.
    assert (good.status_code, keyless.status_code, health.status_code) == (429, 401, 200)


async def test_the_failed_authentication_limit_is_on_by_default(database_url):
    async with app_client(
        database_url, auth_failures_per_minute=Config().auth_failures_per_minute
    ) as client:
        statuses = [
            (
                await client.get(URL, headers={"Gram-Key": f"glk_wrong{i}", "Gram-Project": "p"})
            ).status_code
            for i in range(40)
        ]
    assert Config().auth_failures_per_minute == 30
    assert statuses.count(401) <= 31 and statuses[-1] == 429


async def _failing_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _call(app, *, key: str | None, client: str) -> int:
    headers = [(b"gram-key", key.encode())] if key else []
    scope = {"type": "http", "path": "/rpc/x", "headers": headers, "client": (client, 1)}
    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    try:
        await app(scope, None, send)
    except TooManyRequests:
        return 429
    return statuses[0]


async def test_the_failure_limit_refills_and_is_per_address():
    clock = Clock()
    limit = RateLimit(_failing_app, failures_per_minute=2, clock=clock)
    assert [await _call(limit, key="k", client="10.0.0.1") for _ in range(3)] == [401, 401, 429]
    assert await _call(limit, key="k", client="10.0.0.2") == 401
    clock.now += 29.9
    assert await _call(limit, key="k", client="10.0.0.1") == 429
    clock.now += 0.1  # a token a 30 s at 2 a minute
    assert await _call(limit, key="k", client="10.0.0.1") == 401
    assert await _call(limit, key="k", client="10.0.0.1") == 429


async def test_the_failure_limit_remembers_a_bounded_number_of_addresses():
    clock = Clock()
    limit = RateLimit(_failing_app, failures_per_minute=1, clock=clock)
    assert limit.failures is not None
    for i in range(MAX_ADDRESSES * 2):
        await _call(limit, key="k", client=f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}")
        assert len(limit.failures) <= MAX_ADDRESSES
