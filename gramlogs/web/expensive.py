"""A per-key cap on concurrent expensive reads, so that one key cannot fill the pool for every
tenant.

Expensive: every export (it holds a read for as long as its client takes the lines), every
histogram (it counts a whole window), and a list or Poly read with a keyword (a keyword without
a trigram, such as ``zz``, scans its whole range). A key may run ``expensive_reads_per_key`` of
them at once per worker process; one more is a 429 ``too_many_requests`` with ``Retry-After``,
answered after the key is checked and before the read. Other reads are index range scans of a
page and are not counted; live tails have their own cap (``tail_max_per_key``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

from gramlogs.core.errors import TooManyRequests

__all__ = ["ExpensiveReads"]


class ExpensiveReads:
    """How many expensive reads each key is running; only keys running one are remembered."""

    def __init__(self, per_key: int) -> None:
        if per_key < 1:
            raise ValueError("per_key must be at least 1")
        self.per_key = per_key
        self._running: dict[uuid.UUID, int] = {}

    def acquire(self, key_id: uuid.UUID) -> None:
        """Count a read of ``key_id``; 429 when it runs ``per_key`` already."""
        running = self._running.get(key_id, 0)
        if running >= self.per_key:
            raise TooManyRequests(
                f"this key is running {running} expensive reads (exports, histograms, keyword"
                f" searches), the most it may run at once; retry when one has ended",
                retry_after=1,
            )
        self._running[key_id] = running + 1

    def release(self, key_id: uuid.UUID) -> None:
        running = self._running.get(key_id, 0) - 1
        if running > 0:
            self._running[key_id] = running
        else:
            self._running.pop(key_id, None)

    @contextlib.contextmanager
    def hold(self, key_id: uuid.UUID, *, expensive: bool = True) -> Iterator[None]:
        """The block as one read of ``key_id``, counted when ``expensive``."""
        if not expensive:
            yield
            return
        self.acquire(key_id)
        try:
            yield
        finally:
            self.release(key_id)

    def running(self, key_id: uuid.UUID) -> int:
        return self._running.get(key_id, 0)

    def __len__(self) -> int:
        return len(self._running)
