"""Loopback ports: a free one, and waiting until one listens."""

from __future__ import annotations

import contextlib
import socket
import time

__all__ = ["HOST", "free_port", "wait_for_port"]

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on now (the OS's choice; another process may still take it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    """Return once something accepts connections on ``port``; RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout} s")
