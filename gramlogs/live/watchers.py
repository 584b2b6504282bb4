"""Live tails' shared reading: one watcher per project a worker tails, fanned out to its tails.

A :class:`Watcher` reads the project's tail journal (storage/journal.py) every ``tail_poll_ms``
while any tail of the project is open in this worker: one statement when nothing is new, two
when something is, however many tails there are. It keeps each tail's matching lines in the
tail's :class:`Subscription` as frames (:class:`Frame`) shared by all of them, each wire format
rendering a line once for every tail that speaks it; up to ``tail_buffer_lines``: a tail that
falls further behind is cut off (``overflowed``) and ends its stream with its resume token, or
reads what it missed from the store (sessions.py), so no buffer grows without bound and no line
is dropped unsaid.

A watcher whose read fails (the database away, a statement's error) keeps its tails open and
reads again, after the poll interval doubling up to RETRY_MAX_S, and as soon as a read succeeds
at the poll interval again. It logs the first failure with its traceback, then one line per
RETRY_LOG_S while the failures go on, and one when a read succeeds again.

A tail that starts behind the watcher (a resume token, a slow start) first reads from the store
(:func:`catch_up`), then subscribes once it has reached the watcher's position.
:class:`Watchers` is the worker's registry: watchers by project, tails per key (the cap), and
draining at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from gramlogs.core import metrics
from gramlogs.core.config import Config
from gramlogs.core.errors import GramlogsError, TooManyRequests
from gramlogs.storage import journal
from gramlogs.storage.database import Database
from gramlogs.storage.journal import Position
from gramlogs.storage.pages import COLUMNS, StoredRow, like_pattern

__all__ = [
    "Backoff",
    "Frame",
    "Renderer",
    "Subscription",
    "TailFilter",
    "Watcher",
    "Watchers",
    "catch_up",
    "drain_all",
]

logger = logging.getLogger("gramlogs.tail")

# Lines read per statement, by the watcher and by a catch-up: whole batches up to about this
# many (one batch at least), and a batch of more than PIECE_LINES in pieces of that many, so
# that one huge batch costs a piece's memory and a tail that keeps up is not cut as slow.
READ_LINES = 5000
PIECE_LINES = 2000
# How long the watcher waits for its tails to make room for a batch's next piece; a tail that
# has not made room by then is slow (its buffer overflows).
ROOM_WAIT_S = 5.0
# A failing watcher's longest wait between reads: a database away for a minute costs about 15
# reads instead of 600 (at the 100 ms default poll), and one back is noticed within 5 s.
RETRY_MAX_S = 5.0
# After the first failure, logged whole because it carries the cause, one line per this many
# seconds while failures go on: an outage of an hour writes about 60 lines, each with the count
# of failed reads since the last, where every failure logged would be 720 tracebacks (at
# RETRY_MAX_S) or 36,000 (without backing off). By time, not per doubling: the doublings end
# within seconds, and an outage that goes on is what must not fill the log.
RETRY_LOG_S = 60.0
_BEFORE_ALL = uuid.UUID(int=0)
_COLUMN_INDEX = {name: i for i, name in enumerate(COLUMNS)}


@dataclass(frozen=True, slots=True)
class TailFilter:
    """Which lines a tail wants: the list endpoint's filters (the same parser makes both)."""

    equals: dict[str, object] = field(default_factory=dict)
    keyword: str | None = None
    # What the columns and the keyword index cannot say (Loki's label regexes, case-sensitive
    # line filters): checked on each line the others let through.
    check: Callable[[StoredRow], bool] | None = None

    @property
    def pattern(self) -> str | None:
        return None if self.keyword is None else like_pattern(self.keyword)

    def matches(self, row: StoredRow, keyword_index: int | None, matched: Sequence[int]) -> bool:
        """Whether ``row`` (pages.COLUMNS first) passes; ``matched`` holds the indexes of the
        patterns the row matched (PostgreSQL's ILIKE decided), ``keyword_index`` this tail's."""
        for column, value in self.equals.items():
            if row[_COLUMN_INDEX[column]] != value:
                return False
        if keyword_index is not None and keyword_index not in matched:
            return False
        return self.check is None or self.check(row)


_T = TypeVar("_T")
# Renders a line for one wire format; given by the HTTP layer, which owns the formats.
Renderer = Callable[[StoredRow, Position], _T]


class Frame:
    """One line read for the tails, and its renderings: each wire format's (the SSE event, Loki's
    stream entry) is made once, by the first tail that sends it, for every tail that gets it."""

    __slots__ = ("_rendered", "position", "row")

    def __init__(self, position: Position, row: StoredRow) -> None:
        self.position = position
        self.row = row
        self._rendered: dict[object, object] | None = None

    def rendered(self, render: Renderer[_T]) -> _T:
        """The line as ``render`` makes it (a module-level function: it is the cache's key)."""
        if self._rendered is None:
            self._rendered = {}
        elif render in self._rendered:
            return cast(_T, self._rendered[render])
        value = render(self.row, self.position)
        self._rendered[render] = value
        return value


class Subscription:
    """A tail's place at its project's watcher: frames waiting to be sent, at most ``limit``."""

    def __init__(self, tail_filter: TailFilter, limit: int, seen: int, wake: asyncio.Event) -> None:
        self.filter = tail_filter
        self.limit = limit
        self.frames: deque[Frame] = deque()
        # Every batch up to this number was offered: what is not in frames did not match.
        self.seen = seen
        self.overflowed = False
        self.wake = wake  # the tail's: set when there is something for it to do

    def offer(self, frames: list[Frame], seen: int) -> bool:
        """Queue ``frames``; False (and nothing kept) when that would exceed the limit."""
        if len(self.frames) + len(frames) > self.limit:
            self.frames.clear()
            self.overflowed = True
            self.wake.set()
            return False
        self.frames.extend(frames)
        self.seen = seen
        if frames:
            self.wake.set()
        return True

    def take(self) -> list[Frame]:
        frames = list(self.frames)
        self.frames.clear()
        return frames


class Backoff:
    """When a failing watcher reads again, and which of its failures it logs (RETRY_MAX_S,
    RETRY_LOG_S). ``clock`` is seconds, as ``time.monotonic``."""

    def __init__(self, first_s: float, clock: Callable[[], float]) -> None:
        self._first = first_s
        self._clock = clock
        self.failures = 0  # in a row
        self._unlogged = 0  # since the last line
        self._log_after = -math.inf

    def failed(self) -> tuple[float, int | None]:
        """One more failure: the wait before the next read, and if this one is to be logged,
        how many went unlogged since the last line (else None)."""
        self.failures += 1
        wait = min(self._first * 2 ** min(self.failures - 1, 64), max(RETRY_MAX_S, self._first))
        now = self._clock()
        if self.failures > 1 and now < self._log_after:
            self._unlogged += 1
            return wait, None
        self._log_after = now + RETRY_LOG_S
        unlogged, self._unlogged = self._unlogged, 0
        return wait, unlogged

    def succeeded(self) -> int:
        """A read succeeded: the failures in a row before it, and the waits start over."""
        failures, self.failures, self._unlogged = self.failures, 0, 0
        self._log_after = -math.inf
        return failures


class Watcher:
    """Reads one project's journal for the tails of this worker (module docstring)."""

    def __init__(self, watchers: Watchers, project_id: uuid.UUID) -> None:
        self._watchers = watchers
        self.project_id = project_id
        self.head = 0  # the last batch number offered to the subscriptions
        self.users = 0  # tails of the project in this worker, subscribed or catching up
        self.subscriptions: set[Subscription] = set()
        self.reading = False
        self.idle = asyncio.Event()
        self.idle.set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"tail watcher {project_id}")

    def subscribe(
        self, tail_filter: TailFilter, position: Position, wake: asyncio.Event
    ) -> Subscription | None:
        """Subscribe a tail at ``position``, if it has every batch the watcher offered already
        and the watcher is not in the middle of a read (whose keywords could lack the tail's);
        else None: catch up first."""
        if self.reading or position < Position(self.head):
            return None
        limit = self._watchers.config.tail_buffer_lines
        subscription = Subscription(tail_filter, limit, self.head, wake)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        poll = self._watchers.config.tail_poll_ms / 1000
        db = self._watchers.db
        sleep = self._watchers.sleep
        backoff = Backoff(poll, self._watchers.clock)
        while True:
            try:
                if not self.ready.done():
                    async with db.connection() as conn:
                        self.head = await journal.head(conn, self.project_id)
                    self.ready.set_result(None)
                more = await self._read(db)
            except Exception as exc:
                # The database away (a GramlogsError) or a bug: the tails wait, and the next
                # read starts where this one would have (nothing was offered).
                if not self.ready.done():
                    self.ready.set_exception(exc)
                    return
                await sleep(self._failed(backoff, exc))
                continue
            if failures := backoff.succeeded():
                logger.info(
                    "tail watcher of %s: reading again after %d failed reads",
                    self.project_id,
                    failures,
                )
            if not more:
                await sleep(poll)

    def _failed(self, backoff: Backoff, exc: Exception) -> float:
        """Log a failed read as ``backoff`` says; the wait before the next."""
        wait, unlogged = backoff.failed()
        if unlogged is None:
            return wait
        if backoff.failures == 1:
            # In full: the cause. A GramlogsError is expected (the database away): a warning.
            level = logging.WARNING if isinstance(exc, GramlogsError) else logging.ERROR
            logger.log(
                level,
                "tail watcher of %s failed: %s; retrying in %.1f s",
                self.project_id,
                exc,
                wait,
                exc_info=exc,
            )
        else:
            logger.warning(
                "tail watcher of %s: %d reads failed in a row (%d not logged), the last: %s;"
                " retrying in %.1f s",
                self.project_id,
                backoff.failures,
                unlogged,
                exc,
                wait,
            )
        return wait

    async def _read(self, db: Database) -> bool:
        """Offer the batches after ``head``, up to READ_LINES lines; whether more are waiting."""
        self.reading = True
        self.idle.clear()
        try:
            tail_filters = [s.filter for s in self.subscriptions]
            patterns = sorted({p for f in tail_filters if (p := f.pattern) is not None})
            async with db.connection() as conn:
                batches = await journal.next_batches(conn, self.project_id, self.head + 1)
                if not batches:
                    return False
                if not self.subscriptions:
                    # Every tail is catching up from the store: nothing to offer, only to know.
                    self.head = batches[-1].seq
                    return len(batches) == journal.NEXT_LIMIT
                large = batches[0].lines > PIECE_LINES
                if not large:
                    last = _last_batch(batches)
                    rows = await journal.read_lines(
                        conn, self.project_id, batches[0].seq, last, patterns
                    )
            if large:
                await self._read_pieces(db, batches[0].seq, patterns)
                return True
            self._offer(rows, patterns, last)
            return last < batches[-1].seq or len(batches) == journal.NEXT_LIMIT
        finally:
            self.reading = False
            self.idle.set()

    async def _read_pieces(self, db: Database, seq: int, patterns: list[str]) -> None:
        """Offer batch ``seq`` a piece at a time, each once the tails have room for it."""
        after = _BEFORE_ALL
        while True:
            async with db.connection() as conn:
                rows = await journal.read_piece(
                    conn, self.project_id, seq, after, PIECE_LINES, patterns
                )
            complete = len(rows) < PIECE_LINES
            if rows:
                after = rows[-1][journal.PIECE_ID_COLUMN]
            await self._room_for(len(rows))
            # Until its last piece, the batch is not offered whole: head stays before it.
            self._offer(
                [r for r in rows if r[0] is not None], patterns, seq if complete else seq - 1
            )
            if complete:
                return

    async def _room_for(self, lines: int) -> None:
        poll = self._watchers.config.tail_poll_ms / 1000
        waited = 0.0
        while waited < ROOM_WAIT_S and any(
            len(s.frames) + lines > s.limit for s in self.subscriptions
        ):
            await asyncio.sleep(poll)
            waited += poll

    def _offer(self, rows: list[Any], patterns: list[str], last: int) -> None:
        framed: dict[int, Frame] = {}
        for subscription in list(self.subscriptions):
            tail_filter = subscription.filter
            index = None if tail_filter.pattern is None else patterns.index(tail_filter.pattern) + 1
            frames = []
            for i, row in enumerate(rows):
                if tail_filter.matches(row, index, row[journal.MATCHED_COLUMN]):
                    frame = framed.get(i)
                    if frame is None:
                        position = Position(row[journal.SEQ_COLUMN], row[0].int)
                        frame = framed[i] = Frame(position, row)
                    frames.append(frame)
            if not subscription.offer(frames, last):
                self.subscriptions.discard(subscription)
        self.head = last


def _last_batch(batches: list[journal.Batch]) -> int:
    """The last of ``batches`` that keeps a read near READ_LINES lines (the first at least)."""
    total = 0
    last = batches[0].seq
    for batch in batches:
        total += batch.lines
        if total > READ_LINES and batch.seq != batches[0].seq:
            break
        last = batch.seq
    return last


async def catch_up(
    db: Database,
    project_id: uuid.UUID,
    tail_filter: TailFilter,
    position: Position,
) -> tuple[list[Frame], Position, bool]:
    """The next frames after ``position`` read from the store, whole batches up to about
    READ_LINES lines: the frames, the position after them, and whether the journal ends there.

    Raises :class:`~gramlogs.core.errors.Gone` when the batches after ``position`` are no
    longer kept.
    """
    first = position.seq if not position.done else position.seq + 1
    patterns = [] if tail_filter.pattern is None else [tail_filter.pattern]
    async with db.connection() as conn:
        batches = await journal.next_batches(conn, project_id, first)
        if not batches:
            return [], position, True
        if batches[0].seq != first:
            raise journal.gone(first)
        if batches[0].lines > PIECE_LINES:
            after = _BEFORE_ALL if position.done else uuid.UUID(int=position.after)
            rows = await journal.read_piece(conn, project_id, first, after, PIECE_LINES, patterns)
            if len(rows) == PIECE_LINES:
                # The batch goes on: the position is its last id read.
                frames = _frames(rows, position, tail_filter, patterns)
                reached = Position(first, rows[-1][journal.PIECE_ID_COLUMN].int)
                return frames, reached, False
            frames = _frames(rows, position, tail_filter, patterns)
            ended = first == batches[-1].seq and len(batches) < journal.NEXT_LIMIT
            return frames, Position(first), ended
        last = _last_batch(batches)
        rows = await journal.read_lines(conn, project_id, first, last, patterns)
    frames = _frames(rows, position, tail_filter, patterns)
    ended = last == batches[-1].seq and len(batches) < journal.NEXT_LIMIT
    return frames, Position(last), ended


def _frames(
    rows: Sequence[Any],
    position: Position,
    tail_filter: TailFilter,
    patterns: list[str],
) -> list[Frame]:
    """The frames of ``rows`` after ``position`` that pass ``tail_filter`` (a line deleted since
    its batch was read has no columns, and no frame)."""
    index = 1 if patterns else None
    frames = []
    for row in rows:
        if row[0] is None:
            continue
        at = Position(row[journal.SEQ_COLUMN], row[0].int)
        if at > position and tail_filter.matches(row, index, row[journal.MATCHED_COLUMN]):
            frames.append(Frame(at, row))
    return frames


_registries: weakref.WeakSet[Watchers] = weakref.WeakSet()


def drain_all() -> None:
    """Shutdown has begun: every tail of this process ends with its resume token."""
    for registry in list(_registries):
        registry.drain()


class Watchers:
    """The worker's watchers, one per project being tailed, and its tails per key."""

    def __init__(
        self,
        db: Database,
        config: Config,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.config = config
        # A watcher's waits between reads, and its clock for logging failures (tests give both).
        self.sleep = sleep
        self.clock = clock
        self.draining = asyncio.Event()
        self._by_project: dict[uuid.UUID, Watcher] = {}
        self._per_key: Counter[uuid.UUID] = Counter()
        self._wakes: set[asyncio.Event] = set()
        _registries.add(self)

    @contextlib.asynccontextmanager
    async def watch(
        self, project_id: uuid.UUID, key_id: uuid.UUID, wake: asyncio.Event
    ) -> AsyncIterator[Watcher]:
        """The project's watcher for one tail of ``key_id`` while the block runs; 429 when the
        key already holds ``tail_max_per_key`` tails in this worker. ``wake`` is the tail's
        event, set when shutdown begins."""
        if self._per_key[key_id] >= self.config.tail_max_per_key:
            raise TooManyRequests(
                f"this key has {self._per_key[key_id]} live tails open, the most allowed"
                f" (GRAMLOGS_TAIL_MAX_PER_KEY); close one first",
                retry_after=5,
            )
        self._per_key[key_id] += 1
        self._wakes.add(wake)
        watcher = self._by_project.get(project_id)
        metrics.tail_opened(new_watcher=watcher is None)
        if watcher is None:
            watcher = self._by_project[project_id] = Watcher(self, project_id)
        watcher.users += 1
        try:
            await asyncio.shield(watcher.ready)
            yield watcher
        finally:
            self._wakes.discard(wake)
            self._per_key[key_id] -= 1
            if not self._per_key[key_id]:
                del self._per_key[key_id]
            watcher.users -= 1
            metrics.tail_closed(last_of_watcher=not watcher.users)
            if not watcher.users:
                del self._by_project[project_id]
                await watcher.stop()

    def drain(self) -> None:
        self.draining.set()
        for wake in self._wakes:
            wake.set()

    async def close(self) -> None:
        self.drain()
        for watcher in list(self._by_project.values()):
            await watcher.stop()
