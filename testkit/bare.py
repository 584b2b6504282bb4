"""``python -m testkit.bare serve``: the floor of any Starlette endpoint, for the benchmarks.

The same uvicorn options as ``gramlogs serve`` answering ``/rpc/logs.listToolExecutionLogs``
with fixed bytes (the file named by ``BENCH_BARE_BODY``): no parsing, no database, no encoding.
``/healthz`` answers too, so that :func:`testkit.serve.live_server` runs it like the server.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from testkit.serve import LiveServer, live_server

__all__ = ["bare_server", "main"]


def _app(body: bytes) -> Starlette:
    async def page(request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    routes = [Route("/rpc/logs.listToolExecutionLogs", page), Route("/healthz", healthz)]
    return Starlette(routes=routes)


@contextlib.contextmanager
def bare_server(body: bytes) -> Iterator[LiveServer]:
    """This app, run as the server is, answering ``body``."""
    with tempfile.TemporaryDirectory(prefix="gramlogs-bare-") as tmp:
        path = Path(tmp) / "body.json"
        path.write_bytes(body)
        with live_server("", Path(tmp), module="testkit.bare", BENCH_BARE_BODY=str(path)) as server:
            yield server


def main() -> int:
    with open(os.environ["BENCH_BARE_BODY"], "rb") as f:
        body = f.read()
    uvicorn.run(
        _app(body),
        host=os.environ["GRAMLOGS_HOST"],
        port=int(os.environ["GRAMLOGS_PORT"]),
        log_level="warning",
        access_log=False,
        server_header=False,
        loop="uvloop",
        http="httptools",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
