"""Per-key token buckets: 429 in the error shape with Retry-After; off by default."""

from __future__ import annotations

import pytest
from _support import app_client

from gramlogs.web.ratelimit import TokenBuckets

URL = "/rpc/logs.listToolExecutionLogs"


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
        third = await client.get("/healthz", headers={"Authorization": bearer["Gram-Key"]})
    assert [first.status_code, second.status_code, third.status_code] == [200, 429, 429]


async def test_requests_without_a_key_are_not_limited(database_url):
    async with app_client(database_url, rate_limit=0.01, rate_limit_burst=1) as client:
        statuses = [(await client.get("/healthz")).status_code for _ in range(5)]
    assert statuses == [200] * 5


async def test_rate_limiting_is_off_by_default(client, make_tenant):
    tenant = await make_tenant()
    statuses = {(await client.get(URL, headers=tenant.headers())).status_code for _ in range(30)}
    assert statuses == {200}
