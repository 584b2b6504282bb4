"""A gramlogs server seen over HTTP: the pages of ``GET /rpc/logs.listToolExecutionLogs`` and
the live tail of ``GET /rpc/logs.tail``.

Standard library only (``http.client``), so the command needs nothing the server does not. The
key goes in the ``Gram-Key`` header and nowhere else: no message here ever holds it.
"""

from __future__ import annotations

import email.utils
import http.client
import random
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import msgspec

from gramlogs import __version__
from gramlogs.client.sse import Event, EventParser

__all__ = [
    "LIST_PATH",
    "MAX_PER_PAGE",
    "TAIL_PATH",
    "Backoff",
    "ClientError",
    "Refused",
    "Remote",
    "Unreachable",
]

LIST_PATH = "/rpc/logs.listToolExecutionLogs"
TAIL_PATH = "/rpc/logs.tail"
MAX_PER_PAGE = 100
CONNECT_TIMEOUT = 10.0
# A page is one statement under the server's time limit (5 s by default): a minute is ample.
PAGE_TIMEOUT = 60.0
# The tail sends a heartbeat every 15 s: three missed ones mean the connection is dead.
TAIL_TIMEOUT = 45.0
# A page answered 429 or 503 is asked again after its Retry-After, this many times in all.
PAGE_ATTEMPTS = 5


class ClientError(Exception):
    """A request that cannot succeed; its message is for the user."""


class Unreachable(ClientError):
    """No HTTP answer: connection refused, name not found, timed out, connection lost."""


class Refused(ClientError):
    """The server answered with an error; the message is the error body's ``message``."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class _Pagination(msgspec.Struct):
    has_next_page: bool = False
    next_page_cursor: str | None = None


class _Page(msgspec.Struct):
    logs: list[msgspec.Raw] = msgspec.field(default_factory=list)
    pagination: _Pagination = msgspec.field(default_factory=_Pagination)


class _ErrorBody(msgspec.Struct):
    message: str


class _End(msgspec.Struct):
    reason: str = ""


_page = msgspec.json.Decoder(_Page)
_error = msgspec.json.Decoder(_ErrorBody)
_end = msgspec.json.Decoder(_End)


class Backoff:
    """Waits between reconnections: ``first`` doubling up to ``most``; each wait is drawn
    between half and all of its step (jitter), so that clients cut off together do not all
    come back at the same instant."""

    def __init__(
        self,
        first: float = 0.5,
        most: float = 10.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.first, self.most, self._rand = first, most, rand
        self._step = first

    def reset(self) -> None:
        self._step = self.first

    def next(self) -> float:
        step = self._step
        self._step = min(step * 2, self.most)
        return step * (0.5 + self._rand() / 2)


class Remote:
    """One server, one key, and optionally one project (``Gram-Project``)."""

    def __init__(self, url: str, key: str, project: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"the URL must be http://HOST[:PORT] or https://…; got {url!r}")
        try:
            self._port = parts.port
        except ValueError:
            raise ClientError(f"the URL's port is not a number: {url!r}") from None
        self.url = url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._base = parts.path.rstrip("/")
        self._headers = {"Gram-Key": key, "User-Agent": f"gramlogs/{__version__}"}
        if project:
            self._headers["Gram-Project"] = project
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- pages ----------------------------------------------------------------------------------

    def walk(
        self, params: dict[str, str], *, sort: str, limit: int | None = None
    ) -> Iterator[list[msgspec.Raw]]:
        """The matching entries (each one's JSON), a page at a time in ``sort`` order, following
        the cursors to the end or until ``limit`` entries."""
        query = {**params, "sort": sort}
        left = limit
        while left is None or left > 0:
            query["per_page"] = str(MAX_PER_PAGE if left is None else min(left, MAX_PER_PAGE))
            page = self._page(query)
            logs = page.logs if left is None else page.logs[:left]
            if left is not None:
                left -= len(logs)
            yield logs
            cursor = page.pagination.next_page_cursor
            if not page.pagination.has_next_page or not cursor:
                return
            query["cursor"] = cursor

    def _page(self, query: dict[str, str]) -> _Page:
        target = self._target(LIST_PATH, query)
        for attempt in range(1, PAGE_ATTEMPTS + 1):
            status, reason, headers, body = self._exchange(target)
            if status == 200:
                try:
                    return _page.decode(body)
                except msgspec.DecodeError as exc:
                    raise ClientError(f"{self.url} sent a page that is not one: {exc}") from None
            error = _refused(status, reason, headers, body)
            if status not in (429, 503) or attempt == PAGE_ATTEMPTS:
                raise error
            time.sleep(1.0 if error.retry_after is None else error.retry_after)
        raise AssertionError("unreachable")

    def _exchange(self, target: str) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        """GET ``target`` on the kept-alive connection; on a fresh one if the server closed
        the old one in the meantime (a GET is safe to send again)."""
        fresh = self._conn is None
        headers = {**self._headers, "Accept": "application/json"}
        try:
            if self._conn is None:
                self._conn = self._connect(PAGE_TIMEOUT)
            self._conn.request("GET", target, headers=headers)
            response = self._conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if fresh:
                raise Unreachable(f"cannot get logs from {self.url}: {_why(exc)}") from None
            return self._exchange(target)
        if response.will_close:
            self.close()
        return response.status, response.reason, response.headers, body

    # -- live tail ------------------------------------------------------------------------------

    def tail(
        self,
        params: dict[str, str],
        *,
        lines: int = 0,
        on_retry: Callable[[float, str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[list[str]]:
        """The live tail's entries (each one's ``data:`` JSON), a batch for each chunk read,
        forever: the newest ``lines`` first, then each new one as it arrives.

        Every reconnection resumes after the last event id received (``Last-Event-ID``), so
        that no entry is missed or repeated; ``lines`` is asked for only until there is one.
        Connection errors, 5xx answers and a silent connection (no byte, not even a heartbeat,
        in ``TAIL_TIMEOUT``) reconnect after a :class:`Backoff` wait; a 429 after its
        Retry-After; an ``end`` event at once, or after the ``retry:`` hint when the server
        shuts down. An ``end`` event of reason ``revoked`` (the key was revoked while the tail
        was open) and any other error answer raise :class:`Refused`. ``on_retry(wait, why)`` is
        told of each wait after a failure.
        """
        last_id = ""
        retry_ms: int | None = None
        backoff = Backoff()
        while True:
            query = dict(params)
            headers = {**self._headers, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            elif lines:
                query["lines"] = str(lines)
            wait, why = 0.0, ""
            conn: http.client.HTTPConnection | None = None
            try:
                conn = self._connect(TAIL_TIMEOUT)
                conn.request("GET", self._target(TAIL_PATH, query), headers=headers)
                response = conn.getresponse()
                if response.status != 200:
                    error = _refused(
                        response.status, response.reason, response.headers, response.read()
                    )
                    if response.status == 429:
                        wait = backoff.next() if error.retry_after is None else error.retry_after
                    elif response.status >= 500:
                        wait = max(backoff.next(), error.retry_after or 0.0)
                    else:
                        raise error
                    why = f"{response.status}: {error}"
                else:
                    backoff.reset()
                    parser = EventParser(last_id)
                    end: Event | None = None
                    while end is None and (chunk := response.read1(65536)):
                        batch = []
                        for event in parser.feed(chunk):
                            if event.type == "end":
                                end = event
                                break
                            if event.type == "message":
                                batch.append(event.data)
                        last_id = parser.last_event_id if end is None else end.id
                        retry_ms = parser.retry if parser.retry is not None else retry_ms
                        if batch:
                            yield batch
                    if end is None:
                        wait, why = backoff.next(), "the server closed the stream"
                    elif _end_reason(end) == "revoked":
                        # A resume would be a 401: say what happened instead.
                        raise Refused(401, "the API key was revoked; the server ended the tail")
                    elif _end_reason(end) == "shutdown":
                        wait = (1000 if retry_ms is None else retry_ms) / 1000
                        why = "the server is shutting down"
            except (OSError, http.client.HTTPException) as exc:
                wait, why = backoff.next(), _why(exc)
            finally:
                if conn is not None:
                    conn.close()
            if wait > 0:
                if on_retry is not None:
                    on_retry(wait, why)
                sleep(wait)

    # -- HTTP -----------------------------------------------------------------------------------

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=CONNECT_TIMEOUT)
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _target(self, path: str, query: dict[str, str]) -> str:
        return f"{self._base}{path}?{urllib.parse.urlencode(query)}" if query else self._base + path


def _refused(status: int, reason: str, headers: http.client.HTTPMessage, body: bytes) -> Refused:
    """The error of a non-200 answer: the Goa body's ``message``, on one line."""
    try:
        message = _error.decode(body).message
    except msgspec.DecodeError:
        message = f"HTTP {status} {reason}".strip()
    message = " ".join(message.splitlines())
    return Refused(status, message, _retry_after(headers.get("Retry-After")))


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: delay-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _end_reason(event: Event) -> str:
    try:
        return _end.decode(event.data).reason
    except msgspec.DecodeError:
        return ""


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).lower()
