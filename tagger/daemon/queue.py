"""The daemon's work queue, in the cache database: a kill -9 at any moment loses nothing.

A path leaves the queue only after its outcome is in the cache; after a crash the batch that was
in flight is simply taken again, and the cache's stat check makes that free for files finished
just before the crash.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tagger.cache import Cache
from tagger.cache.schema import daemon, queue

#: Backoff for transient errors (a locked or changing file): 30 s, 1, 2, 4 ... up to 1 h.
BACKOFF_BASE = 30.0
BACKOFF_MAX = 3600.0
MAX_ATTEMPTS = 8


class WorkQueue:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def put(self, path: str, reason: str) -> None:
        """Queue ``path`` (again): a path is in the queue at most once."""
        stmt = sqlite_insert(queue).values(path=path, reason=reason, enqueued_at=time.time(),
                                           not_before=0.0, attempts=0)
        stmt = stmt.on_conflict_do_nothing(index_elements=["path"])
        with self.cache.engine.begin() as conn:
            conn.execute(stmt)

    def take(self, limit: int) -> list[str]:
        """The oldest due paths (they stay queued until :meth:`done`)."""
        q = (select(queue.c.path).where(queue.c.not_before <= time.time())
             .order_by(queue.c.enqueued_at).limit(limit))
        with self.cache.engine.connect() as conn:
            return list(conn.execute(q).scalars())

    def done(self, paths: list[str]) -> None:
        with self.cache.engine.begin() as conn:
            conn.execute(delete(queue).where(queue.c.path.in_(paths)))

    def retry_later(self, path: str) -> bool:
        """Back off a transient failure; False (and dropped) after too many attempts."""
        with self.cache.engine.begin() as conn:
            attempts = conn.execute(select(queue.c.attempts).where(queue.c.path == path)).scalar()
            if attempts is None or attempts + 1 >= MAX_ATTEMPTS:
                conn.execute(delete(queue).where(queue.c.path == path))
                return False
            wait = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempts)
            conn.execute(update(queue).where(queue.c.path == path)
                         .values(attempts=attempts + 1, not_before=time.time() + wait))
        return True

    def __len__(self) -> int:
        with self.cache.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(queue)).scalar() or 0)


class DaemonState:
    """Key/value facts the daemon publishes for ``genre-tagger status``."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def set(self, **values: Any) -> None:
        with self.cache.engine.begin() as conn:
            for key, value in values.items():
                stmt = sqlite_insert(daemon).values(key=key, value=json.dumps(value))
                conn.execute(stmt.on_conflict_do_update(index_elements=["key"],
                                                        set_={"value": json.dumps(value)}))

    def get(self) -> dict[str, Any]:
        with self.cache.engine.connect() as conn:
            return {k: json.loads(v) for k, v in conn.execute(select(daemon.c.key, daemon.c.value))}
