"""What the lifespan opens and the handlers use: typed, on ``app.state.gramlogs``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gramlogs.core.config import Config
from gramlogs.live.watchers import Watchers
from gramlogs.storage.access import KeyCache
from gramlogs.storage.database import Database
from gramlogs.web.body import BodyBudget
from gramlogs.web.expensive import ExpensiveReads

__all__ = ["AppState", "app_state"]


@dataclass
class AppState:
    config: Config
    db: Database
    watchers: Watchers
    # The write requests' body bytes in flight (body.py).
    bodies: BodyBudget
    expensive: ExpensiveReads
    # Successful key lookups, reused for config.key_cache_s (storage/access.py).
    keys: KeyCache


def app_state(request: Request) -> AppState:
    # Starlette's State is untyped; the lifespan (app.py) sets this attribute to an AppState.
    state: AppState = request.app.state.gramlogs
    return state
