"""The log viewer: a static page at ``/`` and its files under ``/viewer/``.

The files live in the package (``gramlogs/web/viewer/``); they are read once, on the first
request, so a request never touches the disk. Each answer carries a strong ETag (a hash of the
content, the same on every server of a release) and ``Cache-Control: no-cache``: browsers
revalidate every load and get a 304 while nothing changed.

The page is a client of the HTTP API like any other: it holds the key in the browser's storage and
sends it only as ``Gram-Key``. The Content-Security-Policy allows the page's own scripts, styles
and requests and nothing else, no inline script or style: an injected log line can only ever be
text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gramlogs.core.errors import NotFound

__all__ = ["CONTENT_SECURITY_POLICY", "ROUTES", "asset", "index"]

_ROOT = Path(__file__).with_name("viewer")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    etag: str
    media_type: str


@cache
def _files() -> dict[str, _File]:
    files = {}
    for path in sorted(_ROOT.rglob("*")):
        media_type = _MEDIA_TYPES.get(path.suffix)
        if media_type is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[path.relative_to(_ROOT).as_posix()] = _File(body, etag, media_type)
    return files


def _serve(request: Request, name: str) -> Response:
    file = _files().get(name)
    if file is None:
        raise NotFound(f"no such file: /viewer/{name}")
    headers = {**_HEADERS, "ETag": file.etag}
    if file.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(file.body, headers=headers, media_type=file.media_type)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


async def index(request: Request) -> Response:
    return _serve(request, "index.html")


async def asset(request: Request) -> Response:
    return _serve(request, request.path_params["name"])


# Files for a browser, not API operations: app.py routes them, /openapi.json leaves them out.
ROUTES = (
    Route("/", index, methods=["GET"]),
    Route("/viewer/{name:path}", asset, methods=["GET"]),
)
