"""The headers every response carries, set in one place: an ASGI middleware outside the others,
so errors rendered by :class:`~gramlogs.web.observe.Observe` get them too.

- ``X-Content-Type-Options: nosniff`` on every response: a log line shown as JSON or NDJSON must
  never be sniffed into HTML by a browser.
- ``Cache-Control: no-store`` on every API response (whatever a handler set): what a response
  holds depends on the key that asked, so no cache, shared or private, may keep it.
- ``Vary: Authorization, Gram-Key, Gram-Project`` on every API response, for a cache that ignores
  ``no-store``: a cache keyed on the URL alone must not serve one tenant's logs to another.

The viewer's files (``/`` and ``/viewer/…``) are the same for every key and keep their own
``Cache-Control: no-cache`` with an ETag, so a browser revalidates them cheaply.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["API_HEADERS", "ResponseHeaders"]

API_HEADERS = {
    "Cache-Control": "no-store",
    "Vary": "Authorization, Gram-Key, Gram-Project",
    "X-Content-Type-Options": "nosniff",
}
_NOSNIFF = (b"x-content-type-options", b"nosniff")
_API = [(name.lower().encode(), value.encode()) for name, value in API_HEADERS.items()]
_REPLACED = frozenset(name for name, _ in _API)


def _is_viewer_file(path: str) -> bool:
    return path == "/" or path.startswith("/viewer/")


class ResponseHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        viewer_file = _is_viewer_file(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                if viewer_file and b"cache-control" in names:
                    if b"x-content-type-options" not in names:
                        headers.append(_NOSNIFF)
                else:
                    headers = [h for h in headers if h[0].lower() not in _REPLACED] + _API
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
