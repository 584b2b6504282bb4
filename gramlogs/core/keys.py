"""API keys: their format, their hash, and what a key lets its holder do.

A key is ``glk_`` followed by 43 url-safe characters (256 random bits). Only its SHA-256 is
stored; the key itself is shown once, when it is created, and never logged. Looking a key up
is the database's work (``storage/access.py``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass

from gramlogs.core.errors import Forbidden

__all__ = [
    "KEY_PREFIX",
    "KeyHolder",
    "KeyScope",
    "Permission",
    "Principal",
    "basic",
    "bearer",
    "hash_key",
    "new_key",
]

KEY_PREFIX = "glk_"


class Permission(enum.StrEnum):
    """What a route does to a project's logs; each route asks for exactly one."""

    READ = "read"  # list, export, tail, histogram, Poly GET
    WRITE = "write"  # ingest, OTLP
    DELETE = "delete"  # Poly DELETE


class KeyScope(enum.StrEnum):
    """A key's scope: a named set of permissions (docs/operations.md, "Security model")."""

    CONSUMER = "consumer"
    # Write only, like Stripe's restricted keys or Sentry's DSNs: the credential that ships logs
    # sits in every function and collector, so its leak must not expose or destroy the logs.
    INGEST = "ingest"
    ADMIN = "admin"
    # The scope every writing key had before ingest and admin existed; such keys keep the power
    # they were made with, so it equals admin.
    PRODUCER = "producer"

    @property
    def permissions(self) -> frozenset[Permission]:
        return _PERMISSIONS[self]

    def allows(self, needed: Permission) -> bool:
        return needed in _PERMISSIONS[self]

    def require(self, needed: Permission) -> None:
        """403 unless the scope grants ``needed``."""
        if needed not in _PERMISSIONS[self]:
            raise Forbidden(
                f"this key has scope {self.value!r}, which lacks the {needed.value!r} permission"
            )


_ALL = frozenset(Permission)
_PERMISSIONS: dict[KeyScope, frozenset[Permission]] = {
    KeyScope.CONSUMER: frozenset({Permission.READ}),
    KeyScope.INGEST: frozenset({Permission.WRITE}),
    KeyScope.ADMIN: _ALL,
    KeyScope.PRODUCER: _ALL,
}


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: uuid.UUID
    scope: KeyScope
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


def basic(value: str | None) -> tuple[str, str] | None:
    """The user and password of an ``Authorization: Basic`` value; None for any other value
    or one that does not decode to ``user:password``."""
    if value is None:
        return None
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """Who a key speaks for, before any project is named (the Poly dialect names a function)."""

    key_id: uuid.UUID
    scope: KeyScope
    organization_id: uuid.UUID
    bound_project_id: uuid.UUID | None  # the one project the key may use; None: any in the org

    def require(self, needed: Permission) -> None:
        self.scope.require(needed)
