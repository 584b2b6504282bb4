"""Bare HTTP/1.1 keep-alive clients for the benchmarks: their own cost is a few µs a request,
so what is measured is the server's (httpx adds ~0.3 ms a request, and ~7 µs a line of an
NDJSON batch, on a machine the clients share with the server and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import urlsplit

from testkit.ports import HOST

__all__ = ["AsyncHttpClient", "HttpClient"]


class HttpClient:
    """GET on a blocking socket, keeping the connection open between requests."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f" HTTP/1.1\r\nHost: {HOST}:{port}\r\n{extra}\r\n".encode()
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection((HOST, self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            return self._get(path)
        except (ConnectionError, BrokenPipeError):
            # uvicorn closes a connection idle for 5 s (between scenarios): open a new one.
            self.sock.close()
            self._connect()
            return self._get(path)

    def _get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(b"GET " + path.encode() + self._head)
        while b"\r\n\r\n" not in self._buf:
            self._buf += self._more()
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._more()
        self._buf = rest[length:]
        return status, rest[:length]

    def _more(self) -> bytes:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


class AsyncHttpClient:
    """POST on asyncio streams, for writers: each request's bytes built once, sent as often as
    needed."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or HOST, parts.port or 80

    async def __aenter__(self) -> AsyncHttpClient:
        await self.connect()
        return self

    async def connect(self) -> None:
        """Open the connection (again, after the server dropped it)."""
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    def request(self, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """The bytes of a POST of ``body`` to ``path``."""
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return head.encode() + b"\r\n" + body

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send a request built by :meth:`request`: the status and the body of the answer."""
        self.writer.write(request)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)
