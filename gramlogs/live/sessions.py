"""One live tail's session, whatever its wire: catch up from the store, follow the watcher, end.

Both tails (the server-sent events of ``/rpc/logs.tail`` and Loki's WebSocket) are a
:class:`TailSession` under their own framing. The session hands its owner lists of
:class:`~gramlogs.live.watchers.Frame` in journal order, each line exactly once, and returns why it
ended: ``slow`` (the client fell ``tail_buffer_lines`` behind, when the session is not told to
catch up instead), ``duration`` (``tail_max_s``), ``shutdown``, ``revoked`` (its key, checked every
``stream_key_check_s``), or None when the client went away (:meth:`TailSession.hang_up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from gramlogs.core import metrics
from gramlogs.core.errors import GramlogsError
from gramlogs.live.watchers import Frame, Subscription, TailFilter, Watcher, Watchers, catch_up
from gramlogs.storage.access import in_force
from gramlogs.storage.journal import Position

__all__ = ["TailSession"]

logger = logging.getLogger("gramlogs.tail")

Send = Callable[[list[Frame]], Awaitable[None]]
# Called when nothing was sent for the heartbeat interval, with the session's position.
Idle = Callable[[Position], Awaitable[None]]


class TailSession:
    """One client's tail of one project (module docstring).

    ``catch_up_when_slow``: a client that falls too far behind reads what it missed from the store
    and goes on, instead of the session ending (a Loki client has no resume token to come back
    with); the store, read a batch at a time, holds what the buffer would have.
    """

    def __init__(
        self,
        watchers: Watchers,
        watcher: Watcher,
        tail_filter: TailFilter,
        position: Position,
        wake: asyncio.Event,
        key_id: uuid.UUID,
        *,
        catch_up_when_slow: bool = False,
    ) -> None:
        self.watchers = watchers
        self.key_id = key_id
        self.watcher = watcher
        self.filter = tail_filter
        self.position = position
        self.wake = wake
        self.catch_up_when_slow = catch_up_when_slow
        self.disconnected = False

    @property
    def project_id(self) -> uuid.UUID:
        return self.watcher.project_id

    def hang_up(self) -> None:
        """The client went away: the session stops at once."""
        self.disconnected = True
        self.wake.set()

    async def run(self, send: Send, idle: Idle | None = None) -> str | None:
        """Send the project's matching lines until the session ends; why it ended (None: the
        client went away). ``idle`` is called every ``tail_heartbeat_s`` without a line."""
        config = self.watchers.config
        deadline = time.monotonic() + config.tail_max_s
        heartbeat = config.tail_heartbeat_s
        check_every = config.stream_key_check_s
        next_check = time.monotonic() + check_every
        subscription: Subscription | None = None
        last_sent = time.monotonic()
        try:
            while not self.disconnected:
                now = time.monotonic()
                if self.watchers.draining.is_set():
                    return _ended("shutdown")
                if now >= deadline:
                    return _ended("duration")
                if now >= next_check:
                    if not await self._key_in_force():
                        return _ended("revoked")
                    next_check = time.monotonic() + check_every
                if subscription is None:
                    subscription = self.watcher.subscribe(self.filter, self.position, self.wake)
                    if subscription is None:
                        frames = await self._catch_up()
                        if frames:
                            await send(frames)
                            last_sent = time.monotonic()
                        continue
                if subscription.overflowed:
                    if not self.catch_up_when_slow:
                        return _ended("slow")
                    # The watcher dropped it; what it held is in the store, after self.position.
                    subscription = None
                    continue
                frames = [f for f in subscription.take() if f.position > self.position]
                if frames:
                    self.position = frames[-1].position
                    await send(frames)
                    last_sent = time.monotonic()
                    continue
                self.position = max(self.position, Position(subscription.seen))
                self.wake.clear()
                due = deadline if idle is None else min(last_sent + heartbeat, deadline)
                wait = min(due, next_check) - time.monotonic()
                try:
                    await asyncio.wait_for(self.wake.wait(), max(wait, 0))
                except TimeoutError:
                    now = time.monotonic()
                    if idle is None or now >= deadline or now < last_sent + heartbeat:
                        continue  # the end, or the key's check, is due: the loop's top does it
                    await idle(self.position)
                    last_sent = time.monotonic()
            return None
        finally:
            if subscription is not None:
                self.watcher.unsubscribe(subscription)

    async def _key_in_force(self) -> bool:
        """Whether the tail's key is still valid; while the database is away, it is taken to be
        (the tail is waiting for the database anyway), and checked again next time."""
        try:
            async with self.watchers.db.connection() as conn:
                return await in_force(conn, self.key_id)
        except GramlogsError as exc:
            if not exc.temporary:
                raise
            logger.warning("live tail of %s: key check: %s; retrying", self.project_id, exc)
            return True

    async def _catch_up(self) -> list[Frame]:
        """Frames from the store up to the watcher's position, a read at a time; none (after
        waiting for the watcher's read to end) when the tail is there already."""
        if self.position >= Position(self.watcher.head):
            # Not subscribed though level with the watcher: it is reading; subscribe after.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.watcher.idle.wait(), 1.0)
            return []
        try:
            frames, after, _ = await catch_up(
                self.watchers.db, self.project_id, self.filter, self.position
            )
        except GramlogsError as exc:
            if not exc.temporary:
                raise
            # The database is away: the stream stays open and tries again.
            logger.warning("live tail of %s: %s; retrying", self.project_id, exc)
            await asyncio.sleep(1.0)
            return []
        self.position = max(frames[-1].position if frames else self.position, after)
        return frames


def _ended(reason: str) -> str:
    metrics.tail_ended(reason)
    return reason
