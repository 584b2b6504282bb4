"""The errors gramlogs answers with, and the one JSON shape they all take.

Every error is a :class:`GramlogsError`; its class carries the HTTP status and the stable Goa
``name`` that Gram's generated clients switch on::

    GramlogsError
    ├── BadRequest               400 bad_request
    │   ├── InvalidFormat        400 invalid_format
    │   ├── InvalidEnumValue     400 invalid_enum_value
    │   ├── InvalidFieldType     400 invalid_field_type
    │   ├── InvalidRange         400 invalid_range
    │   └── InvalidLength        400 invalid_length
    ├── Unauthorized             401 unauthorized
    ├── Forbidden                403 forbidden
    ├── NotFound                 404 not_found
    ├── MethodNotAllowed         405 method_not_allowed
    ├── RequestTimeout           408 request_timeout   (temporary; sent by server.py)
    ├── Conflict                 409 conflict
    ├── Gone                     410 gone
    ├── PayloadTooLarge          413 payload_too_large
    ├── UriTooLong               414 uri_too_long      (sent by server.py)
    ├── UnsupportedMediaType     415 unsupported_media_type
    ├── UnprocessableContent     422 unprocessable_content
    ├── TooManyRequests          429 too_many_requests (temporary, Retry-After)
    ├── HeadersTooLarge          431 headers_too_large (sent by server.py)
    ├── Unavailable              503 unavailable       (temporary, Retry-After)
    └── Unexpected               500 unexpected        (fault)

:func:`error_body` builds the wire shape and :func:`encode_error` its bytes. This module knows
nothing of HTTP frameworks: ``web/observe.py`` maps exceptions to these errors in one place
(:func:`~gramlogs.web.observe.http_error`), and ``web/server.py`` answers with them for requests
refused before they reach the application.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Annotated

import msgspec
from msgspec import Meta


class ErrorBody(msgspec.Struct):
    """Goa's ServiceError, the body of every error response"""

    # As Gram serialises it: every field always written (so required in /openapi.json).
    name: Annotated[
        str,
        Meta(description="Name is the name of this class of errors.", examples=["invalid_range"]),
    ]
    id: Annotated[
        str,
        Meta(
            description="ID is a unique identifier for this particular occurrence of the problem "
            "(also the X-Request-Id header and the access-log line's id).",
            examples=["8KEwa3vdiwW-"],
        ),
    ]
    message: Annotated[
        str,
        Meta(
            description="Message is a human-readable explanation specific to this occurrence of "
            "the problem.",
            examples=["per_page must be lesser or equal than 100 but got value 101"],
        ),
    ]
    temporary: Annotated[bool, Meta(description="Is the error temporary?")]
    timeout: Annotated[bool, Meta(description="Is the error a timeout?")]
    fault: Annotated[bool, Meta(description="Is the error a server-side fault?")]


class GramlogsError(Exception):
    status: int = 500
    name: str = "unexpected"
    temporary: bool = False
    timeout: bool = False
    fault: bool = False
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GramlogsError):
    status = 400
    name = "bad_request"


class InvalidFormat(BadRequest):
    name = "invalid_format"

    @classmethod
    def of(cls, param: str, value: str, fmt: str) -> InvalidFormat:
        return cls(f"{param} must be formatted as {fmt} but got value {quote(value)}")


class InvalidEnumValue(BadRequest):
    name = "invalid_enum_value"

    @classmethod
    def of(cls, param: str, value: str, allowed: Iterable[str]) -> InvalidEnumValue:
        choices = ", ".join(quote(a) for a in allowed)
        return cls(f"value of {param} must be one of {choices} but got value {quote(value)}")


class InvalidFieldType(BadRequest):
    name = "invalid_field_type"

    @classmethod
    def of(cls, param: str, value: str, type_name: str) -> InvalidFieldType:
        return cls(f"invalid value {quote(value)} for {param}, must be a {type_name}")


class InvalidRange(BadRequest):
    name = "invalid_range"

    @classmethod
    def at_least(cls, param: str, minimum: int, value: object) -> InvalidRange:
        return cls(f"{param} must be greater or equal than {minimum} but got value {value}")

    @classmethod
    def at_most(cls, param: str, maximum: int, value: object) -> InvalidRange:
        return cls(f"{param} must be lesser or equal than {maximum} but got value {value}")


class InvalidLength(BadRequest):
    name = "invalid_length"

    @classmethod
    def at_most(cls, param: str, maximum: int, length: int) -> InvalidLength:
        return cls(f"length of {param} must be lesser or equal than {maximum} but got {length}")


class Unauthorized(GramlogsError):
    status = 401
    name = "unauthorized"


class Forbidden(GramlogsError):
    status = 403
    name = "forbidden"


class NotFound(GramlogsError):
    status = 404
    name = "not_found"


class MethodNotAllowed(GramlogsError):
    status = 405
    name = "method_not_allowed"


class Conflict(GramlogsError):
    """The request is valid but the project's state refuses it (a function with logs off)."""

    status = 409
    name = "conflict"


class Gone(GramlogsError):
    """What the request points at is no longer kept (a live tail's resume point)."""

    status = 410
    name = "gone"


class PayloadTooLarge(GramlogsError):
    status = 413
    name = "payload_too_large"


class RequestTimeout(GramlogsError):
    status = 408
    name = "request_timeout"
    temporary = True
    timeout = True


class UriTooLong(GramlogsError):
    status = 414
    name = "uri_too_long"


class HeadersTooLarge(GramlogsError):
    status = 431
    name = "headers_too_large"


class TooManyRequests(GramlogsError):
    status = 429
    name = "too_many_requests"
    temporary = True

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class UnsupportedMediaType(GramlogsError):
    status = 415
    name = "unsupported_media_type"


class UnprocessableContent(GramlogsError):
    """Well-formed, but not to be processed as sent: an Idempotency-Key that was first used
    with another request (RFC 9110 section 15.5.21; the IETF Idempotency-Key draft's 422)."""

    status = 422
    name = "unprocessable_content"


class Unavailable(GramlogsError):
    status = 503
    name = "unavailable"
    temporary = True

    def __init__(self, message: str, *, timeout: bool = False, retry_after: int = 1) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.headers = {"Retry-After": str(retry_after)}


class Unexpected(GramlogsError):
    status = 500
    name = "unexpected"
    fault = True


def new_request_id() -> str:
    """A short unique id that ties a response to the server's log line (72 random bits)."""
    return secrets.token_urlsafe(9)


def error_body(error: GramlogsError, error_id: str) -> ErrorBody:
    return ErrorBody(
        name=error.name,
        id=error_id,
        message=error.message,
        temporary=error.temporary,
        timeout=error.timeout,
        fault=error.fault,
    )


_encoder = msgspec.json.Encoder()


def encode_error(error: GramlogsError, error_id: str) -> bytes:
    """The JSON body of ``error``; every error response is built by this one function."""
    return _encoder.encode(error_body(error, error_id))


SHOWN_CHARACTERS = 60


def shorten(value: str) -> str:
    """A value from the request, cut for an error message: no message echoes a whole body."""
    return value if len(value) <= SHOWN_CHARACTERS else value[:SHOWN_CHARACTERS] + "…"


def quote(value: str) -> str:
    """:func:`shorten`, JSON-quoted: clients echo messages into terminals and HTML, so what came
    from the request is escaped (control characters included)."""
    return msgspec.json.encode(shorten(value)).decode()
