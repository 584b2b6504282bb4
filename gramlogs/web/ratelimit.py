"""Per-key rate limiting: a token bucket per API key, in process, off by default.

Each key may make ``burst`` requests at once and ``rate`` per second after that; a request over
the limit is a 429 ``too_many_requests`` with ``Retry-After``, answered before the request touches
the database. The key is read from ``Gram-Key`` or ``Authorization`` (the headers the dialects
authenticate with), so every route, present and future, is covered without code of its own.
Requests without a key are not limited here: they are refused with a 401 by their handler.

Buckets live in the worker process: with ``--workers N`` a key gets up to N times the configured
rate. A shared limit needs a shared store (or a proxy in front), which gramlogs does not have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from gramlogs.core.errors import TooManyRequests
from gramlogs.core.keys import bearer, hash_key

__all__ = ["RateLimit", "TokenBuckets"]

_KEY_HEADERS = (b"gram-key", b"authorization")


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

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {k: b for k, b in self._buckets.items() if now - b[1] < full_after}
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)


def _presented_key(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name in _KEY_HEADERS:
            key = bearer(value.decode("latin-1"))
            if key:
                # A digest, so that the table holds no key material.
                return hash_key(key)
    return None


class RateLimit:
    """ASGI middleware: the buckets above, applied before routing."""

    def __init__(self, app: ASGIApp, *, rate: float, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = _presented_key(scope)
            if key is not None:
                wait = self.buckets.take(key)
                if wait > 0:
                    seconds = max(1, math.ceil(wait))
                    raise TooManyRequests(
                        f"rate limit of {self.buckets.rate:g} requests per second for this key "
                        f"exceeded; retry in {seconds} s",
                        retry_after=seconds,
                    )
        await self.app(scope, receive, send)
