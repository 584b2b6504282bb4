"""Request bodies of the write endpoints: media type, content encoding, and a size limit; and
their replies, which an Idempotency-Key may replay (storage/idempotency.py).

The limit holds while the body arrives: reading stops at ``limit + 1`` bytes (413) instead of
buffering whatever a client sends, and a compressed body is inflated in bounded steps so that a
small gzip file cannot expand into gigabytes in memory (a "zip bomb").

Two more bounds hold across requests: the bytes every write request of the process holds while
it is read and decoded (:class:`BodyBudget`, a 503 past ``GRAMLOGS_MAX_BODY_BYTES_IN_FLIGHT``),
and the event loop's time: inflating, decoding and mapping a body larger than ``SMALL_BODY``
run in a pool of ``HEAVY_THREADS`` threads (:func:`off_loop`), so one tenant's large body does
not stall every other request, ``/healthz`` included.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core.errors import (
    BadRequest,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
    shorten,
)
from gramlogs.storage.idempotency import Reply

__all__ = [
    "HEAVY_THREADS",
    "REPLAYED",
    "SMALL_BODY",
    "BodyBudget",
    "Held",
    "answer",
    "content_encoding",
    "media_type",
    "off_loop",
    "read_body",
]

_P = ParamSpec("_P")
_T = TypeVar("_T")

# Below this many bytes, decoding takes well under a millisecond: the hop to a thread would cost
# more than it saves.
SMALL_BODY = 16 * 1024
# Few: the pool bounds how many large bodies are decoded at once (each holds its memory), and
# decoding holds the GIL most of the time, so more threads would not decode faster.
HEAVY_THREADS = 2
# Deflate's most: a stream of one repeated byte inflates about 1,032 times (zlib's FAQ).
_MAX_DEFLATE_RATIO = 1032
_heavy = ThreadPoolExecutor(HEAVY_THREADS, thread_name_prefix="gramlogs-body")


async def off_loop(size: int, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``work(*args, **kwargs)``: in the body threads when ``size`` (bytes) is past SMALL_BODY,
    else here, on the event loop."""
    call = functools.partial(work, *args, **kwargs)
    if size <= SMALL_BODY:
        return call()
    return await asyncio.get_running_loop().run_in_executor(_heavy, call)


class BodyBudget:
    """The body bytes (as received, and decompressed) that this process's write requests hold
    while they are read and decoded, against ``GRAMLOGS_MAX_BODY_BYTES_IN_FLIGHT``.

    Thread-safe: bodies are inflated in the body threads.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    @contextmanager
    def holding(self) -> Iterator[Held]:
        """One request's share, given back when the request is done with its body."""
        held = Held(self)
        try:
            yield held
        finally:
            held.give_back()


class Held:
    """What one request holds of a :class:`BodyBudget`."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.bytes = 0

    def take(self, n: int) -> None:
        """Hold ``n`` more bytes, or the 503 when the process holds too many already."""
        budget = self._budget
        with budget._lock:
            if budget.held + n > budget.limit:
                raise Unavailable(
                    f"the server is reading too many request bodies at once (more than"
                    f" {budget.limit} bytes, GRAMLOGS_MAX_BODY_BYTES_IN_FLIGHT); retry shortly"
                )
            budget.held += n
            self.bytes += n

    def give_back(self) -> None:
        budget = self._budget
        with budget._lock:
            budget.held -= self.bytes
            self.bytes = 0


# Stripe's response header on a reply replayed for an Idempotency-Key.
REPLAYED = "Idempotent-Replayed"

# wbits for zlib.decompressobj: 16 + 15 reads a gzip member; 15 reads the zlib format, which is
# what HTTP calls "deflate" (RFC 9110 section 8.4.1.2).
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def media_type(request: Request, allowed: Iterable[str]) -> str:
    """The request's media type (lower case, without parameters), one of ``allowed`` or 415."""
    header = request.headers.get("content-type", "")
    kind, _, params = header.partition(";")
    kind = kind.strip().lower()
    allowed = tuple(allowed)
    if kind not in allowed:
        shown = kind or "none"
        raise UnsupportedMediaType(
            f"Content-Type must be one of {', '.join(allowed)}; got {shorten(shown.strip())!r}"
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise UnsupportedMediaType(
                f"the body must be UTF-8; got charset {shorten(value.strip())!r}"
            )
    return kind


def content_encoding(request: Request) -> str:
    """The body's content coding, lower case (``identity`` when none); 415 for one not read."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower() or "identity"
    if encoding != "identity" and encoding not in _DECODERS:
        raise UnsupportedMediaType(
            f"Content-Encoding must be gzip, deflate or identity; got {shorten(encoding.strip())!r}"
        )
    return encoding


async def read_body(request: Request, limit: int, held: Held) -> bytes:
    """The whole body, decompressed; 413 as soon as it exceeds ``limit`` bytes either way, 503
    when the process holds too many body bytes (``held`` counts this request's).

    A compressed body is inflated once it has all arrived, in the body threads unless it is
    too small to inflate past SMALL_BODY (8 KB of gzip can inflate to 8 MiB).
    """
    encoding = content_encoding(request)
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, "")
    received = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit, "")
        held.take(len(chunk))
        chunks.append(chunk)
    raw = b"".join(chunks)
    del chunks
    if encoding not in _DECODERS:
        return raw
    # Sized by what it may inflate to, not by what arrived.
    inflated = min(len(raw) * _MAX_DEFLATE_RATIO, limit)
    return await off_loop(inflated, _inflate, raw, encoding, limit, held)


def _inflate(raw: bytes, encoding: str, limit: int, held: Held) -> bytes:
    inflater = zlib.decompressobj(_DECODERS[encoding])
    chunks: list[bytes] = []
    produced = 0
    data = raw
    while data:
        try:
            # Steps of at most 1 MiB, each counted before the next is made.
            out = inflater.decompress(data, min(limit - produced + 1, 1 << 20))
        except zlib.error:
            raise BadRequest(f"the body is not valid {encoding} data") from None
        produced += len(out)
        if produced > limit:
            raise _too_large(limit, "decompressed ")
        held.take(len(out))
        chunks.append(out)
        data = inflater.unconsumed_tail
        if inflater.eof and (data or inflater.unused_data):
            raise BadRequest(f"unexpected data after the end of the {encoding} stream")
        if not out and not data:
            break
    if raw and not inflater.eof:
        raise BadRequest(f"the {encoding} body ends before its stream does")
    return b"".join(chunks)


def _too_large(limit: int, which: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the {which}request body exceeds {limit} bytes (GRAMLOGS_MAX_BODY_BYTES)"
    )


def answer(reply: Reply, *, replayed: bool = False) -> Response:
    """The response of a write endpoint, first sent or replayed: the same status, media type and
    bytes either way; a replay says so in ``Idempotent-Replayed: true``."""
    headers = {REPLAYED: "true"} if replayed else None
    # A 204 has no body, so no Content-Type either (RFC 9110 section 15.3.5).
    kind = None if reply.status == 204 else reply.media_type
    return Response(reply.body, status_code=reply.status, media_type=kind, headers=headers)
