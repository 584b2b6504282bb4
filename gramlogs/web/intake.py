"""A write door's intake: everything between a request and its stored batch but the format.

``POST /rpc/logs.ingest`` (ingest.py) and ``POST /v1/logs`` (otlp.py) take a batch in the same
steps, in the same order, each for a reason:

1. the key and the Idempotency-Key headers, the media type (415), the content coding (415);
2. the key may write to the project, on a connection of its own, so that none is held while
   the body arrives (401/403);
3. the body, read under the process's budget (body.py: 413, 503), then counted, decoded and
   mapped to rows by the door (400, 413) and hashed for an Idempotency-Key, in the body
   threads when it is large;
4. on one connection: a recorded reply for the Idempotency-Key is replayed (after the body's
   checks, which give a resend the same answer, so that a bad body is told what is wrong with
   it; before the project's state, which may have changed); entries of functions whose logs
   are turned off are refused or left out, as the door says; the rows are stored with the
   key's record in one transaction (``writer.store_batch``), so that a failure records nothing.

A :class:`Door` says what differs: which media types, how a body becomes rows, what becomes of
entries of a disabled function, and the reply's shape.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core import metrics
from gramlogs.core.keys import Permission, Principal
from gramlogs.storage import writer
from gramlogs.storage.access import authenticate
from gramlogs.storage.batch import FUNCTION_COLUMN, MAX_LISTED, function_ids
from gramlogs.storage.functions import disabled_among
from gramlogs.storage.idempotency import Claim, Replay, Reply, request_hash
from gramlogs.storage.writer import NewRow
from gramlogs.web.body import answer, content_encoding, media_type, off_loop, read_body
from gramlogs.web.params import gram_credentials, idempotency_key
from gramlogs.web.state import AppState, app_state

__all__ = [
    "Decoded",
    "Door",
    "Problems",
    "accept_batch",
    "entries_of",
    "first_shown",
    "listed",
    "read_batch",
]

_T = TypeVar("_T")


@dataclass(slots=True)
class Decoded:
    """What a door made of a body: the rows to store, and the entries it left out (counted in
    the reply, as OTLP's ``partial_success``; logs.ingest refuses a batch instead)."""

    rows: list[NewRow]
    rejected: int = 0
    problems: list[str] = field(default_factory=list)  # the first MAX_LISTED, naming each entry


@dataclass(frozen=True, slots=True)
class Door:
    """What a write door says of its format; :func:`accept_batch` does the rest."""

    media_types: tuple[str, ...]
    # (body, media type, project, entry cap): the rows, or the 400 or 413. One piece of work
    # for the body threads: counting, decoding and mapping.
    decode: Callable[[bytes, str, uuid.UUID, int], Decoded]
    # (what was decoded, the functions among its rows whose logs are off): the batch without
    # their entries, or the 409 that refuses it. Only called when there are some.
    disabled: Callable[[Decoded, set[uuid.UUID]], Decoded]
    # (media type, what is stored, stored, duplicates): the reply, recorded for the key too.
    reply: Callable[[str, Decoded, int, int], Reply]
    # The key and project slug of a request, or the 401: Gram's headers unless the door's
    # clients send them another way (Loki's, web/loki/auth.py).
    credentials: Callable[[Request], tuple[str, str]] = gram_credentials


async def accept_batch(request: Request, door: Door) -> Response:
    """Store a write request's batch through ``door`` and answer it (module docstring)."""
    credentials = door.credentials(request)
    once = idempotency_key(request)
    kind = media_type(request, door.media_types)
    state = app_state(request)
    cap = state.config.max_batch_entries
    principal, decoded, digest = await read_batch(
        request,
        state,
        credentials,
        kind,
        once is not None,
        lambda body, principal: door.decode(body, kind, principal.project_id, cap),
    )
    project_id = principal.project_id
    try:
        async with state.db.connection() as conn:
            claim = None
            if once is not None and digest is not None:
                claim = Claim(project_id, once, digest, state.config.idempotency_hours)
                await claim.replay_if_recorded(conn)
            if decoded.rejected:
                metrics.rejected("invalid", decoded.rejected)
            disabled = await disabled_among(conn, project_id, function_ids(decoded.rows))
            if disabled:
                decoded = door.disabled(decoded, disabled)
            reply = functools.partial(door.reply, kind, decoded)
            # Looked up on the module when called, so that testkit/crash.py can wrap it.
            stored, duplicates = await writer.store_batch(
                conn,
                project_id,
                decoded.rows,
                companion=None if claim is None else claim.recorder(reply),
            )
    except Replay as replay:
        return answer(replay.reply, replayed=True)
    metrics.ingested(stored)
    return answer(reply(stored, duplicates))


async def read_batch(
    request: Request,
    state: AppState,
    credentials: tuple[str | None, str],
    kind: str,
    hash_it: bool,
    decode: Callable[[bytes, Principal], _T],
) -> tuple[Principal, _T, bytes | None]:
    """A write door's first steps, in their order: the key may write to the project (on a
    connection of its own, so that none is held while the body arrives); then the body, read
    under the process's budget and ``decode``d, with its request hash when ``hash_it`` (an
    Idempotency-Key), in the body threads when it is large. The key, what ``decode`` made, and
    the hash."""
    key, slug = credentials
    encoding = content_encoding(request)  # its 415 before the key's lookup
    async with state.db.connection() as conn:
        principal = await authenticate(
            conn, key, Permission.WRITE, project_slug=slug, cache=state.keys
        )
    hashed = (request.url.path, encoding) if hash_it else None
    with state.bodies.holding() as held:
        body = await read_body(request, state.config.max_body_bytes, held)
        decoded, digest = await off_loop(
            len(body), _decode_and_hash, decode, body, principal, kind, hashed
        )
    return principal, decoded, digest


def _decode_and_hash(
    decode: Callable[[bytes, Principal], _T],
    body: bytes,
    principal: Principal,
    kind: str,
    hashed: tuple[str, str] | None,
) -> tuple[_T, bytes | None]:
    # One piece of work for the body threads (``hashed``: the path and content coding).
    decoded = decode(body, principal)
    return decoded, None if hashed is None else request_hash(hashed[0], kind, hashed[1], body)


# -- The doors' messages --------------------------------------------------------------------------


class Problems:
    """The entries of a batch that cannot be stored: how many, and the first MAX_LISTED, each
    named (a reply of every problem of a large batch would be larger than the batch)."""

    def __init__(self) -> None:
        self.count = 0
        self.listed: list[str] = []

    def add(self, problem: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED:
            self.listed.append(problem)

    @property
    def shown(self) -> str:
        return first_shown(self.count)


def first_shown(total: int) -> str:
    """What a message adds when it lists the first MAX_LISTED of ``total``."""
    return f" (first {MAX_LISTED} shown)" if total > MAX_LISTED else ""


def listed(items: Iterable[object]) -> str:
    """The first MAX_LISTED of ``items``, for a message."""
    return ", ".join(str(item) for item in itertools.islice(items, MAX_LISTED))


def entries_of(rows: Sequence[NewRow], functions: set[uuid.UUID]) -> list[int]:
    """The indexes of the ``rows`` of ``functions``."""
    # Rows hold ids as canonical text (BatchBuilder.uuid), the database gives uuid.UUIDs.
    wanted = {str(f) for f in functions}
    return [i for i, row in enumerate(rows) if str(row[FUNCTION_COLUMN]) in wanted]
