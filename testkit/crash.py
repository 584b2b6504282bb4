"""``python -m testkit.crash serve ...``: ``gramlogs serve`` that dies by SIGKILL right after a
batch's transaction commits, before its reply is sent.

That is the window an Idempotency-Key is for: the lines are durable and the client never hears
so. Only the tests run this; the package has no such hook. It wraps ``writer.store_batch``
(whose return means COMMIT was acknowledged; the write doors' intake looks it up on the module
when it calls it), and then runs the usual command line, in this process (one worker: the
wrapper must be in the process that serves).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from typing import Any

from gramlogs import cli
from gramlogs.storage import writer

__all__ = ["main"]


def _die_after(store: Any) -> Any:
    @functools.wraps(store)
    async def store_then_die(*args: Any, **kwargs: Any) -> Any:
        await store(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    return store_then_die


def main() -> int:
    writer.store_batch = _die_after(writer.store_batch)
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
