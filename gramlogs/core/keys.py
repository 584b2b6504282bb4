"""API keys: their format, their hash, and what a key lets its holder do.

A key is ``glk_`` followed by 43 url-safe characters (256 random bits). Only its SHA-256 is
stored; the key itself is shown once, when it is created, and never logged. Looking a key up
is the database's work (``storage/access.py``).
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from gramlogs.core.errors import Forbidden

__all__ = ["KEY_PREFIX", "KeyHolder", "Principal", "Scope", "bearer", "hash_key", "new_key"]

KEY_PREFIX = "glk_"


class Scope(enum.StrEnum):
    CONSUMER = "consumer"
    PRODUCER = "producer"

    def allows(self, needed: Scope) -> bool:
        """A producer may do all a consumer can."""
        return self is Scope.PRODUCER or needed is Scope.CONSUMER


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: uuid.UUID
    scope: Scope
    project_id: uuid.UUID


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def bearer(value: str | None) -> str | None:
    """The key in a header value; a leading ``Bearer `` (any case) is tolerated."""
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return value.strip() or None


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """Who a key speaks for, before any project is named (the Poly dialect names a function)."""

    key_id: uuid.UUID
    scope: Scope
    organization_id: uuid.UUID
    bound_project_id: uuid.UUID | None  # the one project the key may use; None: any in the org

    def require(self, needed: Scope) -> None:
        if not self.scope.allows(needed):
            raise Forbidden(
                f"this key has scope {self.scope.value!r}; {needed.value!r} is required"
            )
