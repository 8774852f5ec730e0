"""A repository whose copies of cached aggregates are never torn."""

from __future__ import annotations

import threading
from typing import Any

from eventsourcing.application import Repository

# Locks shared by hash of the aggregate id: two ids may share one, which only
# makes their loads take turns.
LOCK_STRIPES = 64


class ConsistentRepository(Repository):  # type: ignore[type-arg]
    """Loads one aggregate at a time per id, so a copy never meets a change.

    The library brings a cached aggregate forward in place, under its own
    lock, and copies it for the caller after releasing that lock. Another
    thread bringing the same aggregate forward at that moment changes the
    dicts being copied, which fails the copy or tears it. Here the whole load
    of an id, copy included, holds one lock.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stripes = [threading.Lock() for _ in range(LOCK_STRIPES)]

    def get(self, aggregate_id: Any, **kwargs: Any) -> Any:
        with self._stripes[hash(aggregate_id) % LOCK_STRIPES]:
            return super().get(aggregate_id, **kwargs)
