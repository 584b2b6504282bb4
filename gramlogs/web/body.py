"""Request bodies of the write endpoints: media type, content encoding, and a size limit; and
their replies, which an Idempotency-Key may replay (storage/idempotency.py).

The limit holds while the body arrives: reading stops at ``limit + 1`` bytes (413) instead of
buffering whatever a client sends, and a compressed body is inflated in bounded steps so that a
small gzip file cannot expand into gigabytes in memory (a "zip bomb").
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import Response

from gramlogs.core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, shorten
from gramlogs.storage.idempotency import Reply

__all__ = ["REPLAYED", "answer", "content_encoding", "media_type", "read_body"]

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


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, decompressed; 413 as soon as it exceeds ``limit`` bytes either way."""
    encoding = content_encoding(request)
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, "")
    inflater = zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None
    received = 0
    chunks: list[bytes] = []
    produced = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit, "")
        if inflater is None:
            chunks.append(chunk)
            continue
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, limit - produced + 1)
            except zlib.error:
                raise BadRequest(f"the body is not valid {encoding} data") from None
            produced += len(out)
            if produced > limit:
                raise _too_large(limit, "decompressed ")
            chunks.append(out)
            data = inflater.unconsumed_tail
            if inflater.eof and (data or inflater.unused_data):
                raise BadRequest(f"unexpected data after the end of the {encoding} stream")
    if inflater is not None and received and not inflater.eof:
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
    return Response(
        reply.body, status_code=reply.status, media_type=reply.media_type, headers=headers
    )
