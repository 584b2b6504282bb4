"""Idempotency keys of the write endpoints: a resent request is answered from the record.

A client that sends a batch with an ``Idempotency-Key`` header (the IETF httpapi draft "The
Idempotency-Key HTTP Header Field"; Stripe's convention) and does not get the reply (a timeout,
a dropped connection, a server killed between commit and reply) sends it again with the same
key. gramlogs then stores nothing and answers with the first reply's status, media type and
bytes. Lines without a timestamp are stamped with the time they arrive, so without a key such a
resend would store them again.

- **Scope**: a project (the authenticated key's); two projects may use the same key.
- **Same request**: the SHA-256 of the endpoint's path, the media type, the content encoding
  and the (decompressed) body, :func:`request_hash`. The same key with another request is a
  422 (:class:`~gramlogs.core.errors.UnprocessableContent`).
- **Exactly once**: the key's row is written first in the transaction that stores the batch
  (:class:`Recorder`, a ``writer.store_batch`` companion) and the reply last, so the row exists
  exactly when the batch does. A concurrent send with the same key waits on the primary key
  until that transaction ends: committed, it is answered from the record; rolled back, it goes
  ahead and stores. Only stores are recorded: a refused request (4xx) leaves nothing behind.
- **Retention**: a record older than ``idempotency_hours`` is as good as absent (the request is
  stored anew and the record replaced); :func:`delete_expired` removes such rows.

Every statement names ``project_id``: on Citus the table is distributed by it beside ``logs``
(``citus.COLOCATED_TABLES``), so a batch and its key are one transaction on one worker.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from gramlogs.core.errors import Unavailable, UnprocessableContent, shorten

__all__ = [
    "BATCH_ROWS",
    "Claim",
    "Recorder",
    "Replay",
    "Reply",
    "delete_expired",
    "request_hash",
]

# Rows removed per DELETE by delete_expired: each statement stays short whatever a project sent.
BATCH_ROWS = 5000
_HEADER = "Idempotency-Key"

_EXPIRED = "created_at <= now() - make_interval(hours => $3)"
_LOOKUP = f"""
SELECT request_hash, status, media_type, response, {_EXPIRED} AS expired
FROM idempotency_keys WHERE project_id = $1 AND key = $2
"""
# Claims the key. A send holding the key uncommitted makes this wait (the primary key); then no
# row comes back when that send committed. (No "DO UPDATE ... WHERE expired" here: Citus takes
# only immutable functions in an ON CONFLICT clause, and now() is not one.)
_CLAIM = """
INSERT INTO idempotency_keys (project_id, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (project_id, key) DO NOTHING
RETURNING true
"""
# Takes over an expired record; of two sends doing so at once, the second finds it fresh. The
# times are parameters ($5 now, $6 the retention's start), read just before: Citus refuses a
# STABLE function such as now() beside a column in an UPDATE.
_NOW = "SELECT now(), now() - make_interval(hours => $1)"
_TAKE_OVER = """
UPDATE idempotency_keys
SET request_hash = $3, status = NULL, media_type = NULL, response = NULL, created_at = $4
WHERE project_id = $1 AND key = $2 AND created_at <= $5
RETURNING true
"""
_RECORD = """
UPDATE idempotency_keys SET status = $3, media_type = $4, response = $5
WHERE project_id = $1 AND key = $2
"""
_EXPIRED_KEYS = """
SELECT key FROM idempotency_keys WHERE project_id = $1 AND created_at <= $2 LIMIT $3
"""
_DELETE = "DELETE FROM idempotency_keys WHERE project_id = $1 AND key = ANY($2::text[])"


@dataclass(frozen=True, slots=True)
class Reply:
    """What a stored request was answered: replayed byte for byte to a resend."""

    status: int
    media_type: str
    body: bytes


class Replay(Exception):
    """The request was answered before under its key: answer ``reply`` again, store nothing."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def request_hash(path: str, media_type: str, encoding: str, body: bytes) -> bytes:
    """SHA-256 of what makes two requests the same: endpoint, media type, content encoding and
    the body as decompressed (a gzip header carries a time, so a client that compresses again
    on a retry sends other bytes for the same request)."""
    digest = hashlib.sha256()
    for part in (path, media_type, encoding):
        digest.update(part.encode("utf-8") + b"\x00")
    digest.update(body)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class Claim:
    """A project's Idempotency-Key on one request: :meth:`replay_if_recorded` before the work,
    :meth:`recorder` to store the batch with it."""

    project_id: uuid.UUID
    key: str
    request_hash: bytes
    hours: int  # the retention: an older record is as good as absent

    async def replay_if_recorded(self, conn: asyncpg.Connection) -> None:
        """:class:`Replay` when the key was used for this request within the retention, 422 when
        for another; else nothing (the request is new)."""
        row = await conn.fetchrow(_LOOKUP, self.project_id, self.key, self.hours)
        if row is not None and not row["expired"]:
            raise _recorded(self, row)

    def recorder(self, reply: Callable[[int, int], Reply]) -> Recorder:
        """The ``store_batch`` companion that records the key and ``reply(stored, duplicates)``
        in the batch's transaction."""
        return Recorder(self, reply)


@dataclass(frozen=True, slots=True)
class Recorder:
    """A :class:`Claim` with its reply, as ``writer.store_batch``'s companion."""

    claim: Claim
    reply: Callable[[int, int], Reply]

    async def begin(self, conn: asyncpg.Connection) -> None:
        """Claim the key, first in the batch's transaction; :class:`Replay` (or 422) when a
        concurrent send with it committed first."""
        c = self.claim
        if await conn.fetchval(_CLAIM, c.project_id, c.key, c.request_hash):
            return
        times = await conn.fetchrow(_NOW, c.hours)
        assert times is not None  # a SELECT without FROM has its one row
        args = (c.project_id, c.key, c.request_hash, *times)
        if await conn.fetchval(_TAKE_OVER, *args):
            return
        # That send's record is committed and unexpired: this statement sees it.
        row = await conn.fetchrow(_LOOKUP, c.project_id, c.key, c.hours)
        if row is None or row["expired"]:
            # Deleted as expired between the two statements, at the very end of its retention.
            raise Unavailable(f"{_HEADER} {shorten(c.key)!r} was in use; retry")
        raise _recorded(c, row)

    async def end(self, conn: asyncpg.Connection, stored: int, duplicates: int) -> None:
        """Record the reply, last in the batch's transaction."""
        reply = self.reply(stored, duplicates)
        c = self.claim
        await conn.execute(_RECORD, c.project_id, c.key, reply.status, reply.media_type, reply.body)


def _recorded(claim: Claim, row: asyncpg.Record) -> Replay | UnprocessableContent:
    """What to raise for the key's unexpired record: its reply, or the 422 for another request."""
    if row["request_hash"] != claim.request_hash:
        return UnprocessableContent(
            f"{_HEADER} {shorten(claim.key)!r} was first used with a different request (body,"
            " endpoint, content type or encoding); send a new key with a new request"
        )
    if row["status"] is None:  # only inside the transaction that claimed it, never ours
        raise RuntimeError(f"{_HEADER} {shorten(claim.key)!r} has a record without a reply")
    return Replay(Reply(row["status"], row["media_type"], bytes(row["response"])))


async def delete_expired(
    conn: asyncpg.Connection, *, hours: int, batch_rows: int = BATCH_ROWS
) -> int:
    """Delete the records older than ``hours``, a project at a time, at most ``batch_rows`` per
    statement; return how many. A project with none costs one probe of the expiry index."""
    cutoff = await conn.fetchval("SELECT now() - make_interval(hours => $1)", hours)
    deleted = 0
    for project in await conn.fetch("SELECT id FROM projects ORDER BY id"):
        while True:
            keys = [
                row["key"]
                for row in await conn.fetch(_EXPIRED_KEYS, project["id"], cutoff, batch_rows)
            ]
            if keys:
                status = await conn.execute(_DELETE, project["id"], keys)
                deleted += int(status.split()[-1])
            if len(keys) < batch_rows:
                break
    return deleted
