"""The tail watcher: while its reads fail it keeps reading, ever less often up to a cap, and
logs a bounded number of lines; the first read that succeeds brings back the poll interval.

No database and no real waiting: the watcher's connections fail or succeed as a script says,
and its sleeps only move a clock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gramlogs.core.config import Config
from gramlogs.core.errors import Unavailable
from gramlogs.live import watchers
from gramlogs.live.watchers import RETRY_LOG_S, RETRY_MAX_S, Watcher, Watchers
from gramlogs.storage import journal

POLL_MS = 100
OK = None
DOWN = Unavailable("the database is unavailable")


class Script:
    """A database whose connections fail or open as ``outcomes`` says, one per connection, and
    a clock moved only by the watcher's sleeps, which it records; once ``outcomes`` is done, the
    next sleep sets ``done`` and waits for the test to stop the watcher."""

    def __init__(self, outcomes: list[Exception | None]) -> None:
        self.outcomes = deque(outcomes)
        self.now = 0.0
        self.sleeps: list[float] = []
        self.done = asyncio.Event()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[None]:
        outcome = self.outcomes.popleft()
        if outcome is not None:
            raise outcome
        yield None

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if not self.outcomes:
            self.done.set()
            await asyncio.Event().wait()

    def clock(self) -> float:
        return self.now


async def run(script: Script, monkeypatch: pytest.MonkeyPatch) -> None:
    """A watcher over ``script`` until its outcomes are spent (the first opens at head 0)."""

    async def head(conn: Any, project_id: uuid.UUID) -> int:
        return 0

    async def nothing_new(conn: Any, project_id: uuid.UUID, first: int) -> list[Any]:
        return []

    monkeypatch.setattr(journal, "head", head)
    monkeypatch.setattr(journal, "next_batches", nothing_new)
    registry = Watchers(
        script,  # type: ignore[arg-type]
        Config(tail_poll_ms=POLL_MS),
        sleep=script.sleep,
        clock=script.clock,
    )
    watcher = Watcher(registry, uuid.uuid4())
    await asyncio.wait_for(script.done.wait(), timeout=10)
    await watcher.stop()


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == watchers.logger.name]


def args(record: logging.LogRecord) -> tuple[Any, ...]:
    """A line's values: (project, failures in a row, not logged since, error, wait)."""
    assert isinstance(record.args, tuple)
    return record.args


async def test_waits_double_to_the_cap_while_reads_fail_and_start_over_after_one_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Script([OK] + [DOWN] * 8 + [OK, OK] + [RuntimeError("a bug")] * 3)
    await run(script, monkeypatch)
    poll = POLL_MS / 1000
    assert RETRY_MAX_S == 5.0
    failing = [poll, 0.2, 0.4, 0.8, 1.6, 3.2, RETRY_MAX_S, RETRY_MAX_S]
    reading = [poll, poll]
    failing_again = [poll, 0.2, 0.4]  # from the start
    assert script.sleeps == pytest.approx([*failing, *reading, *failing_again])


async def test_the_first_failure_is_logged_with_its_traceback_then_a_line_a_minute_at_most(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=watchers.logger.name)
    failures = 1000
    script = Script([OK] + [DOWN] * failures + [OK] + [RuntimeError("a bug")])
    await run(script, monkeypatch)

    *failing, recovered, bug = failure_lines(caplog)
    first, *later = failing
    assert (first.levelno, first.exc_info is not None) == (logging.WARNING, True)
    assert "failed: the database is unavailable; retrying in 0.1 s" in first.getMessage()
    # 1000 failures over more than an hour of the clock: a line per RETRY_LOG_S, not per failure.
    failing_for = sum(script.sleeps[:failures])
    assert failing_for > 3600
    assert len(later) <= failing_for / RETRY_LOG_S
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in later)
    # Each line counts the failures in a row, and those not logged since the line before: none
    # goes unsaid but the last few.
    said = 1 + sum(1 + args(r)[2] for r in later)
    assert args(later[-1])[1] == said
    assert failures - RETRY_LOG_S / RETRY_MAX_S <= said <= failures
    assert (recovered.levelno, recovered.getMessage().split(": ")[1]) == (
        logging.INFO,
        f"reading again after {failures} failed reads",
    )
    # A new run of failures is logged in full again, a bug as an error.
    assert (bug.levelno, bug.exc_info is not None) == (logging.ERROR, True)
    assert "failed: a bug; retrying in 0.1 s" in bug.getMessage()
