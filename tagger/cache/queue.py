"""The daemon's work queue and published state, in the cache database: a kill -9 at any moment
loses nothing.

A path leaves the queue only after its outcome is in the cache; after a crash the batch that was
in flight is simply taken again, and the cache's stat check makes that free for files finished
just before the crash. Plain SQLAlchemy Core (update, else insert), so every database the cache
takes works, not only SQLite.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from tagger.cache.schema import daemon, queue
from tagger.cache.store import Cache, decode_path, encode_path

#: Backoff for transient errors (a locked or changing file): 30 s, 1, 2, 4 ... up to 1 h.
BACKOFF_BASE = 30.0
BACKOFF_MAX = 3600.0
MAX_ATTEMPTS = 8


class WorkQueue:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def put(self, path: str, reason: str) -> None:
        """Queue ``path`` (again): a path is in the queue at most once. Queued again (it changed
        and settled since), a path backing off is due at once; its attempts still count."""
        stored = encode_path(path)
        with self.cache.engine.begin() as conn:
            if conn.execute(update(queue).where(queue.c.path == stored).values(not_before=0.0)).rowcount:
                return
            conn.execute(insert(queue).values(path=stored, reason=reason, enqueued_at=time.time(),
                                              not_before=0.0, attempts=0))

    def take(self, limit: int) -> list[str]:
        """The oldest due paths (they stay queued until :meth:`done`)."""
        q = (select(queue.c.path).where(queue.c.not_before <= time.time())
             .order_by(queue.c.enqueued_at).limit(limit))
        with self.cache.engine.connect() as conn:
            return [decode_path(p) for p in conn.execute(q).scalars()]

    def done(self, paths: list[str]) -> None:
        with self.cache.engine.begin() as conn:
            conn.execute(delete(queue).where(queue.c.path.in_([encode_path(p) for p in paths])))

    def retry_later(self, path: str) -> bool:
        """Back off a transient failure; False (and dropped) after too many attempts."""
        path = encode_path(path)
        with self.cache.engine.begin() as conn:
            attempts = conn.execute(select(queue.c.attempts).where(queue.c.path == path)).scalar()
            if attempts is None or attempts + 1 >= MAX_ATTEMPTS:
                conn.execute(delete(queue).where(queue.c.path == path))
                return False
            wait = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempts)
            conn.execute(update(queue).where(queue.c.path == path)
                         .values(attempts=attempts + 1, not_before=time.time() + wait))
        return True

    def later(self, path: str, seconds: float) -> None:
        """Look at ``path`` again in ``seconds`` (no attempt counted: it is waiting, not failing)."""
        with self.cache.engine.begin() as conn:
            conn.execute(update(queue).where(queue.c.path == encode_path(path))
                         .values(not_before=time.time() + seconds))

    def __len__(self) -> int:
        with self.cache.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(queue)).scalar() or 0)

    def paths(self) -> list[str]:
        """Every queued path, due or backing off."""
        with self.cache.engine.connect() as conn:
            return [decode_path(p) for p in conn.execute(select(queue.c.path)).scalars()]


class DaemonState:
    """Key/value facts the daemon publishes for ``genre-tagger status``."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def set(self, **values: Any) -> None:
        with self.cache.engine.begin() as conn:
            for key, value in values.items():
                text = json.dumps(value)
                if not conn.execute(update(daemon).where(daemon.c.key == key).values(value=text)).rowcount:
                    conn.execute(insert(daemon).values(key=key, value=text))

    def get(self) -> dict[str, Any]:
        with self.cache.engine.connect() as conn:
            return {k: json.loads(v) for k, v in conn.execute(select(daemon.c.key, daemon.c.value))}
