"""What the long responses (the live tails' events, an export's lines) share: a send that gives
up on a client that takes nothing, and a watch for the client's hang-up, so that no work is done
for a client that is gone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.types import Message, Receive, Send

__all__ = ["SEND_TIMEOUT_S", "Stuck", "send_within", "watching_disconnect"]

# A client hanging up, and a WebSocket client closing (or hanging up).
_DISCONNECT = frozenset({"http.disconnect", "websocket.disconnect"})
# A client that takes no bytes for this long is gone or stuck: the stream is dropped.
SEND_TIMEOUT_S = 30.0


class Stuck(Exception):
    """The client took nothing for SEND_TIMEOUT_S."""


async def send_within(send: Send, message: Message) -> None:
    """``send(message)``, or :class:`Stuck` when the client takes nothing for SEND_TIMEOUT_S."""
    try:
        await asyncio.wait_for(send(message), SEND_TIMEOUT_S)
    except TimeoutError:
        raise Stuck from None


@contextlib.asynccontextmanager
async def watching_disconnect(
    receive: Receive, on_disconnect: Callable[[], None]
) -> AsyncIterator[None]:
    """Calls ``on_disconnect`` as soon as the client hangs up, while the block runs."""

    async def listen() -> None:
        while True:
            message = await receive()
            if message["type"] in _DISCONNECT:
                on_disconnect()
                return

    listener = asyncio.create_task(listen())
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
