"""Cache operations. One writer (the process that scans or runs the daemon); WAL lets readers
(``genre-tagger status``/``show``) look in while it writes, and a busy timeout rides out the
moments they overlap instead of failing with "database is locked"."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, select, update
from sqlalchemy.engine import Connection

from tagger.cache.schema import migrate, tracks

BUSY_TIMEOUT_MS = 30_000


def default_url() -> str:
    """SQLite in the XDG state directory (``~/.local/state/genre-tagger/cache.sqlite``)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(state) / 'genre-tagger' / 'cache.sqlite'}"


@dataclass(frozen=True)
class TrackRow:
    path: str
    size: int | None
    mtime_ns: int | None
    audio_id: str | None
    model_version: str | None
    raw_scores: dict[str, float]
    genre_scores: dict[str, float]
    genres_chosen: list[str]
    genres_before: list[str] | None
    genres_written: list[str] | None
    decision_key: str | None
    status: str
    error_code: str | None
    error_reason: str | None
    analysed_at: float | None
    written_at: float | None
    updated_at: float | None
    analyses: int = 0


#: (size, mtime_ns, model_version, status, decision_key)
StatEntry = tuple[int | None, int | None, str | None, str, str | None]

_JSON = ("raw_scores", "genre_scores", "genres_chosen", "genres_before", "genres_written")
_EMPTY: dict[str, Any] = {"raw_scores": {}, "genre_scores": {}, "genres_chosen": []}


def _row(m: Any) -> TrackRow:
    d = dict(m)
    for k in _JSON:
        d[k] = json.loads(d[k]) if d[k] is not None else _EMPTY.get(k)
    d.pop("id", None)
    d.pop("created_at", None)
    return TrackRow(**d)


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v) if k in _JSON and v is not None else v) for k, v in values.items()}


class Cache:
    def __init__(self, url: str | None = None) -> None:
        url = url or default_url()
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with self.engine.begin() as conn:
            self.schema_version = migrate(conn)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads -------------------------------------------------------------------------------

    def get(self, path: str) -> TrackRow | None:
        with self.engine.connect() as conn:
            m = conn.execute(select(tracks).where(tracks.c.path == path)).mappings().first()
        return _row(m) if m else None

    def by_audio_id(self, audio_id: str, model_version: str) -> list[TrackRow]:
        """Analysed rows with this audio (other paths: moves, renames, copies)."""
        q = select(tracks).where(tracks.c.audio_id == audio_id,
                                 tracks.c.model_version == model_version,
                                 tracks.c.status.in_(("done", "abstained", "deleted")))
        with self.engine.connect() as conn:
            return [_row(m) for m in conn.execute(q).mappings()]

    def stat_index(self, prefixes: Iterable[str] = (),
                   paths: list[str] | None = None) -> dict[str, StatEntry]:
        """path -> (size, mtime_ns, model_version, status, decision_key): the no-decode fast path.

        With ``paths``, only those rows are read (the daemon's small batches), not the library.
        """
        q = select(tracks.c.path, tracks.c.size, tracks.c.mtime_ns, tracks.c.model_version,
                   tracks.c.status, tracks.c.decision_key)
        if paths is not None:
            q = q.where(tracks.c.path.in_(paths))
        with self.engine.connect() as conn:
            rows = conn.execute(q)
            pre = tuple(prefixes)
            return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows
                    if not pre or r[0].startswith(pre)}

    def rows_under(self, prefixes: Iterable[str]) -> Iterator[TrackRow]:
        pre = tuple(prefixes)
        with self.engine.connect() as conn:
            for m in conn.execute(select(tracks).order_by(tracks.c.path)).mappings():
                if m["path"].startswith(pre):
                    yield _row(m)

    def summary(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            by_status: dict[str, int] = {
                k: v for k, v in conn.execute(select(tracks.c.status, func.count())
                                              .group_by(tracks.c.status))}
            failures: dict[str, int] = {
                k: v for k, v in conn.execute(select(tracks.c.error_code, func.count())
                                              .where(tracks.c.status == "failed")
                                              .group_by(tracks.c.error_code))}
            written = conn.execute(select(tracks.c.genres_written)
                                   .where(tracks.c.genres_written.is_not(None))).scalars().all()
        genres: dict[str, int] = {}
        for w in written:
            for g in json.loads(w):
                genres[g] = genres.get(g, 0) + 1
        return {"by_status": by_status, "failures": failures, "tagged": len(written),
                "genres": dict(sorted(genres.items(), key=lambda kv: (-kv[1], kv[0])))}

    def last_errors(self, n: int) -> list[dict[str, Any]]:
        q = (select(tracks.c.path, tracks.c.error_code, tracks.c.error_reason, tracks.c.updated_at)
             .where(tracks.c.status == "failed").order_by(tracks.c.updated_at.desc()).limit(n))
        with self.engine.connect() as conn:
            return [{"path": r[0], "code": r[1], "reason": r[2], "at": r[3]} for r in conn.execute(q)]

    # --- writes ------------------------------------------------------------------------------

    def upsert(self, path: str, **values: Any) -> None:
        now = time.time()
        values = _encode({**values, "updated_at": now})
        with self.engine.begin() as conn:
            self._upsert(conn, path, values, now)

    @staticmethod
    def _upsert(conn: Connection, path: str, values: dict[str, Any], now: float) -> None:
        done = conn.execute(update(tracks).where(tracks.c.path == path).values(**values))
        if done.rowcount == 0:
            conn.execute(tracks.insert().values(path=path, created_at=now,
                                                **{"status": "pending", **values}))

    def move(self, old: str, new: str, **values: Any) -> None:
        """A file moved or was renamed: its row follows it (replacing any row at ``new``)."""
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(delete(tracks).where(tracks.c.path == new))
            conn.execute(update(tracks).where(tracks.c.path == old)
                         .values(path=new, **_encode({**values, "updated_at": now})))

    def count_analysis(self, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(tracks).where(tracks.c.path == path)
                         .values(analyses=tracks.c.analyses + 1))

    def forget(self, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(tracks).where(tracks.c.path == path))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
