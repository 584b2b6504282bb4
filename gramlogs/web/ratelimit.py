"""Rate limits answered before a request touches the database, in process.

- Per key (off by default): each key may make ``burst`` requests at once and ``rate`` per second
  after that. The key is the one the route authenticates with (:func:`~gramlogs.web.params.
  presented_key`: ``Gram-Key``, ``Authorization`` on Poly's routes), so a decoy in the other
  header neither spends another key's tokens nor escapes the limit. Requests without a key are
  not limited here: they are refused with a 401 by their handler.
- Failed authentications per client address (on by default): each 401 to a request that
  presented a key spends a token of the address; with none left, requests that present a key
  are refused before their key is looked up, so guessing keys costs the database nothing.

Over either limit the answer is a 429 ``too_many_requests`` with ``Retry-After``. Every route,
present and future, is covered without code of its own.

Buckets live in the worker process: with ``--workers N`` a key gets up to N times the configured
rate. A shared limit needs a shared store (or a proxy in front), which gramlogs does not have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gramlogs.core.errors import TooManyRequests
from gramlogs.core.keys import hash_key
from gramlogs.web.params import presented_key

__all__ = ["RateLimit", "TokenBuckets"]

# Client addresses whose failures are remembered at once; past it, idle ones are forgotten.
MAX_ADDRESSES = 10_000


class TokenBuckets:
    """Token buckets keyed by bytes; ``take`` spends one token or says how long to wait.

    Memory is bounded: past ``max_keys`` buckets, those that have refilled (idle keys) are
    dropped; if every bucket is busy, all are dropped, which can only let a key through early.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[bytes, list[float]] = {}  # key -> [tokens, last refill time]

    def take(self, key: bytes) -> float:
        """Spend a token of ``key``: 0.0 when allowed, else the seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            self._buckets[key] = [self.burst - 1, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return 0.0
        bucket[0] = tokens
        return (1 - tokens) / self.rate

    def wait(self, key: bytes) -> float:
        """What :meth:`take` would answer, spending nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket[0] + (self._clock() - bucket[1]) * self.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < full_after}
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimit:
    """ASGI middleware: the buckets above, applied before routing. ``rate`` 0 turns the per-key
    limit off, ``failures_per_minute`` 0 the failed-authentication one."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate: float = 0.0,
        burst: int = 1,
        failures_per_minute: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst, clock=clock) if rate > 0 else None
        self.failures = (
            TokenBuckets(
                failures_per_minute / 60,
                failures_per_minute,
                max_keys=MAX_ADDRESSES,
                clock=clock,
            )
            if failures_per_minute > 0
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A WebSocket's handshake (Loki's live tail) is a request like any other.
        if scope["type"] not in ("http", "websocket") or (key := presented_key(scope)) is None:
            await self.app(scope, receive, send)
            return
        address = _address(scope)
        if self.failures is not None:
            _refuse_for(
                self.failures.wait(address),
                f"too many failed authentications from this address (more than "
                f"{self.failures.burst:g} a minute)",
            )
        if self.buckets is not None:
            # A digest, so that the table holds no key material.
            _refuse_for(
                self.buckets.take(hash_key(key)),
                f"rate limit of {self.buckets.rate:g} requests per second for this key exceeded",
            )
        if self.failures is None:
            await self.app(scope, receive, send)
            return
        failures = self.failures

        async def counting(message: Message) -> None:
            if message["type"] in _RESPONSE_START and message["status"] == 401:
                failures.take(address)
            await send(message)

        await self.app(scope, receive, counting)


_RESPONSE_START = frozenset({"http.response.start", "websocket.http.response.start"})


def _address(scope: Scope) -> bytes:
    client = scope.get("client")
    return client[0].encode() if client else b""


def _refuse_for(wait: float, reason: str) -> None:
    """A 429 when a bucket says to wait ``wait`` seconds (Retry-After: whole ones, at least 1)."""
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise TooManyRequests(f"{reason}; retry in {seconds} s", retry_after=seconds)
