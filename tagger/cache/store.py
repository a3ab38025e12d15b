"""Cache operations, on SQLite (the default) or PostgreSQL (several machines, one cache).

SQLite: one writer at a time; WAL lets readers (``genre-tagger status``/``show``) look in while
it writes, and a busy timeout rides out the moments they overlap instead of failing with
"database is locked". PostgreSQL: several daemons write at once, so every row that two of them
may add together is written in one statement (``INSERT ... ON CONFLICT``), never "update, else
insert", which fails for the second of two processes adding the same row."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

from sqlalchemy import Engine, Table, create_engine, delete, event, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from tagger.cache import owners
from tagger.cache.schema import features as stored_features
from tagger.cache.schema import intents, migrate, top_score, tracks
from tagger.errors import CacheUnavailable, first_line, install_hint

BUSY_TIMEOUT_MS = 30_000

#: Marks a stored path that is not valid UTF-8 (see :func:`encode_path`).
_B64_PREFIX = "b64:"


def encode_path(path: str) -> str:
    """The text stored for ``path`` in the ``tracks`` and ``queue`` tables.

    A Linux file name is any bytes: one that is not valid UTF-8 arrives as a str with surrogate
    escapes (``os.fsdecode``), which neither SQLite nor PostgreSQL can store. Such a path is
    stored as ``"b64:"`` + base64 of its bytes; every other path as itself. Real paths are
    absolute (they start with "/"), so the prefix cannot be mistaken for one; a name that does
    start with it is encoded too, which keeps the codec lossless for any str.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if not path.startswith(_B64_PREFIX):
            return path
    return _B64_PREFIX + base64.b64encode(os.fsencode(path)).decode("ascii")


def decode_path(stored: str) -> str:
    """The path :func:`encode_path` stored as ``stored`` (surrogate escapes for odd bytes)."""
    if stored.startswith(_B64_PREFIX):
        try:
            return os.fsdecode(base64.b64decode(stored[len(_B64_PREFIX):], validate=True))
        except (binascii.Error, ValueError):
            return stored  # not ours: keep it as it is rather than lose the row
    return stored


def default_url() -> str:
    """SQLite in the XDG state directory (``~/.local/state/genre-tagger/cache.sqlite``)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(state) / 'genre-tagger' / 'cache.sqlite'}"


#: A file's state in the cache. ``deleted``: the file is gone (its row keeps the scores, so a
#: file that comes back, or moves, is not analysed again).
Status = Literal["pending", "done", "abstained", "failed", "deleted"]


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
    status: Status
    error_code: str | None
    error_reason: str | None
    analysed_at: float | None
    written_at: float | None
    updated_at: float | None
    analyses: int = 0
    album_key: str | None = None
    confidence: float | None = None  # v8: the top genre score
    genres_seen: list[str] | None = None  # v8: the file's genres when last read or written


@dataclass(frozen=True)
class Intent:
    """A genre write about to happen (see :data:`tagger.cache.schema.intents`)."""

    path: str
    current: list[str]  # the file's genres just before this write
    before: list[str]  # what revert restores: the genres before our first write
    new: list[str]  # what is being written
    decision_key: str | None
    owner: str | None = None  # the writing process (tagger.cache.owners); None before v6
    created_at: float = 0.0


class StatEntry(NamedTuple):
    """What the no-decode fast path needs to know about a file."""

    size: int | None
    mtime_ns: int | None
    model_version: str | None
    status: Status
    decision_key: str | None
    album_key: str | None = None


class StoredFeatures(NamedTuple):
    """An audio's base-model features (see :mod:`tagger.analysis.embedding`)."""

    windows: int
    data: bytes
    raw_scores: dict[str, float]
    timeline: bytes | None = None  # embedding.pack_timeline; None for audio stored before v5


_JSON = ("raw_scores", "genre_scores", "genres_chosen", "genres_before", "genres_written",
         "genres_seen")
_EMPTY: dict[str, Any] = {"raw_scores": {}, "genre_scores": {}, "genres_chosen": []}


def _row(m: Any) -> TrackRow:
    d = dict(m)
    d["path"] = decode_path(d["path"])
    for k in _JSON:
        d[k] = json.loads(d[k]) if d[k] is not None else _EMPTY.get(k)
    d.pop("id", None)
    d.pop("created_at", None)
    return TrackRow(**d)


def _encode(values: dict[str, Any]) -> dict[str, Any]:
    if values.get("genre_scores") is not None:  # the column the page sorts on follows them
        values = {**values, "confidence": top_score(values["genre_scores"])}
    return {k: (json.dumps(v) if k in _JSON and v is not None else v) for k, v in values.items()}


def put_row(conn: Connection, table: Table, key: dict[str, Any], values: dict[str, Any],
            on_insert: dict[str, Any] | None = None) -> None:
    """The row at ``key`` gets ``values``; a new row also ``on_insert``. With no ``values`` an
    existing row is left as it is.

    One statement on SQLite and PostgreSQL (``ON CONFLICT``), so two processes adding the same
    row at once both succeed; other databases update, else insert.
    """
    row = {**(on_insert or {}), **key, **values}
    if conn.dialect.name in ("sqlite", "postgresql"):
        # the two dialects' inserts have the same ON CONFLICT methods
        stmt = (sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert)(table).values(**row)
        conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=values) if values
                     else stmt.on_conflict_do_nothing(index_elements=list(key)))
        return
    where = [table.c[k] == v for k, v in key.items()]
    if values and conn.execute(update(table).where(*where).values(**values)).rowcount:
        return
    if values or conn.execute(select(func.count()).select_from(table).where(*where)).scalar() == 0:
        conn.execute(insert(table).values(**row))


def put_new_rows(conn: Connection, table: Table, key: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, leaving any whose ``key`` is there already as it is: one
    executemany on SQLite and PostgreSQL (50,000 rows: one statement, not 50,000)."""
    if not rows:
        return
    if conn.dialect.name in ("sqlite", "postgresql"):
        stmt = (sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert)(table)
        conn.execute(stmt.on_conflict_do_nothing(index_elements=[key]), rows)
        return
    for row in rows:
        put_row(conn, table, {key: row[key]}, {}, row)


def sqlite_file(url: str) -> str | None:
    """The file a SQLite URL opens (as SQLAlchemy reads the URL), else None: another database,
    SQLite in memory, or a ``file:`` URI (whose options only SQLite reads)."""
    try:
        u = make_url(url)
    except ArgumentError:
        return None
    db = u.database
    if u.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:") \
            or "uri" in u.query:
        return None
    return db


def is_damaged(e: BaseException) -> bool:
    """A SQLite error saying the file is not a database, or a damaged one (SQLITE_NOTADB,
    SQLITE_CORRUPT): reading it again will not help, unlike a lock or a permission."""
    orig = getattr(e, "orig", None) or e
    name = getattr(orig, "sqlite_errorname", None)  # Python 3.11+
    if name is not None:
        return str(name).startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT"))
    text = str(orig)
    return "file is not a database" in text or "database disk image is malformed" in text


def _private_sqlite(path: Path, ours: bool) -> None:
    """The cache holds the library's paths and its history: the person's alone. A new folder is
    made 0700 and a new database 0600 (SQLite gives its -wal and -shm files the database's
    mode); the default location, which genre-tagger made, is tightened if an older release
    left it readable by all. A folder or file the person chose is not touched."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    elif ours:
        os.chmod(path.parent, 0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        if ours:
            for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(p, 0o600)


def _existing_sqlite(url: str, path: str) -> URL:
    """``url`` opened read-write but never created (SQLite's ``mode=rw``): a database deleted
    after it was looked for is not made anew empty."""
    u = make_url(url)
    return u.set(database="file:" + quote(os.fsencode(os.path.abspath(path))),
                 query={**u.query, "mode": "rw", "uri": "true"})


class Cache:
    def __init__(self, url: str | None = None, owner: str | None = None, create: bool = True) -> None:
        """``create=False``: a SQLite file that is not there is not created (nor its folder):
        :class:`CacheUnavailable` with ``problem="missing"``. Other databases are unaffected."""
        url = url or default_url()
        self.url = url
        #: Who this process is in a shared database: its write intents and queue claims.
        self.owner = owner or owners.process_id()
        path = sqlite_file(url)
        opened: str | URL = url
        if path is not None and not create:
            if _absent(path):
                raise CacheUnavailable(f"there is no cache database at {path}", "missing", path)
            opened = _existing_sqlite(url, path)
        try:
            if create and url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                _private_sqlite(Path(url.removeprefix("sqlite:///")), url == default_url())
            # pre_ping: a daemon outlives a PostgreSQL restart (a dropped connection is
            # replaced, not raised into the middle of a scan)
            self.engine: Engine = create_engine(opened, pool_pre_ping=not url.startswith("sqlite"))
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            with self.engine.begin() as conn:
                self.schema_version = migrate(conn)
            #: The SQLite file opened, held by a descriptor of our own for :meth:`lost` (never
            #: closed before the engine: closing any descriptor of a file drops every POSIX
            #: lock this process holds on it, SQLite's included, and another process's SQLite
            #: would then take itself for the last user and delete the WAL under us).
            self._file = path
            self._fd = (os.open(path, os.O_RDONLY | os.O_CLOEXEC) if path is not None
                        else None)
        except ImportError as e:
            extra = f" ({install_hint('cluster')})" if url.startswith("postgresql") else ""
            raise CacheUnavailable(f"cannot open the cache database: the driver for {url.split(':')[0]} "
                                   f"is not installed{extra}: {e}") from None
        except (SQLAlchemyError, RuntimeError, OSError) as e:
            problem: Literal["missing", "damaged"] | None = None
            if path is not None and is_damaged(e):
                problem = "damaged"
            elif path is not None and not create and _absent(path):
                problem = "missing"  # deleted while it was being opened
            raise CacheUnavailable(f"cannot open the cache database: {first_line(e)}",
                                   problem, path, first_line(getattr(e, "orig", None) or e)) from None

    @property
    def file(self) -> str | None:
        """The SQLite file this cache opened (None: another database, or in memory)."""
        return self._file

    def close(self) -> None:
        self.engine.dispose()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reads -------------------------------------------------------------------------------

    def get(self, path: str) -> TrackRow | None:
        with self.engine.connect() as conn:
            m = conn.execute(select(tracks).where(tracks.c.path == encode_path(path))).mappings().first()
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
                   tracks.c.status, tracks.c.decision_key, tracks.c.album_key)
        if paths is not None:
            q = q.where(tracks.c.path.in_([encode_path(p) for p in paths]))
        with self.engine.connect() as conn:
            rows = conn.execute(q)
            pre = tuple(prefixes)
            found = ((decode_path(r[0]), r) for r in rows)
            return {p: StatEntry(r[1], r[2], r[3], r[4], r[5], r[6]) for p, r in found
                    if not pre or p.startswith(pre)}

    def album_members(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """album key -> paths of the files known to belong to it (any status)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, list[str]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(keys), 500):
                q = (select(tracks.c.album_key, tracks.c.path)
                     .where(tracks.c.album_key.in_(keys[i:i + 500])).order_by(tracks.c.path))
                for key, path in conn.execute(q):
                    out.setdefault(key, []).append(decode_path(path))
        return out

    def decided(self) -> Iterator[tuple[Status, list[str], dict[str, float]]]:
        """(status, genres chosen, genre scores) of every analysed file that is still there:
        what ``stats --plot`` draws."""
        q = select(tracks.c.status, tracks.c.genres_chosen, tracks.c.genre_scores).where(
            tracks.c.status.in_(("done", "abstained")))
        with self.engine.connect() as conn:
            for status, chosen, scores in conn.execute(q):
                yield (status, json.loads(chosen) if chosen else [],
                       json.loads(scores) if scores else {})

    def written(self) -> list[tuple[str, list[str]]]:
        """(path, genres written) of every file the cache says carries genres we wrote: what
        ``stats`` checks against the files."""
        q = (select(tracks.c.path, tracks.c.genres_written)
             .where(tracks.c.genres_written.is_not(None)).order_by(tracks.c.path))
        with self.engine.connect() as conn:
            return [(decode_path(p), json.loads(w)) for p, w in conn.execute(q)]

    def rows_under(self, folders: Iterable[str], resolve: bool = False) -> Iterator[TrackRow]:
        """Rows of files below ``folders`` (whole names: /x/music is not /x/music2); with
        ``resolve``, also those whose folder resolves (symlinks) to below one of them."""
        pre = tuple(f.rstrip(os.sep) + os.sep for f in folders)
        real: dict[str, bool] = {}  # one realpath per folder, not per file

        def below(path: str) -> bool:
            if path.startswith(pre):
                return True
            if not resolve:
                return False
            folder = os.path.dirname(path)
            if folder not in real:
                try:
                    real[folder] = (os.path.realpath(folder) + os.sep).startswith(pre)
                except OSError:  # swapped while resolved: not known to be below
                    real[folder] = False
            return real[folder]

        with self.engine.connect() as conn:
            for m in conn.execute(select(tracks).order_by(tracks.c.path)).mappings():
                if below(decode_path(m["path"])):
                    yield _row(m)

    def summary(self, genres: bool = True) -> dict[str, Any]:
        """Files by status, failures by reason and (``genres``) the genres we wrote: those
        read the rows, the counts only an index (the page counts genres its own way)."""
        with self.engine.connect() as conn:
            by_status: dict[str, int] = {
                k: v for k, v in conn.execute(select(tracks.c.status, func.count())
                                              .group_by(tracks.c.status))}
            failures: dict[str, int] = {
                k: v for k, v in conn.execute(select(tracks.c.error_code, func.count())
                                              .where(tracks.c.status == "failed")
                                              .group_by(tracks.c.error_code))}
            if not genres:
                return {"by_status": by_status, "failures": failures}
            # per distinct set of genres: a few hundred JSON texts to read, not one per file
            written = conn.execute(select(tracks.c.genres_written, func.count())
                                   .where(tracks.c.genres_written.is_not(None))
                                   .group_by(tracks.c.genres_written)).all()
        counts: dict[str, int] = {}
        for w, n in written:
            for g in json.loads(w):
                counts[g] = counts.get(g, 0) + n
        return {"by_status": by_status, "failures": failures, "tagged": sum(n for _, n in written),
                "genres": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}

    def last_errors(self, n: int) -> list[dict[str, Any]]:
        q = (select(tracks.c.path, tracks.c.error_code, tracks.c.error_reason, tracks.c.updated_at)
             .where(tracks.c.status == "failed").order_by(tracks.c.updated_at.desc()).limit(n))
        with self.engine.connect() as conn:
            return [{"path": decode_path(r[0]), "code": r[1], "reason": r[2], "at": r[3]}
                    for r in conn.execute(q)]

    def features(self, audio_ids: Iterable[str], base_version: str) -> dict[str, StoredFeatures]:
        """Stored features of these audios under one base model (absent ones are left out)."""
        ids = list(dict.fromkeys(audio_ids))
        out: dict[str, StoredFeatures] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):  # bound the IN list (SQLite's variable limit)
                q = select(stored_features).where(stored_features.c.base_version == base_version,
                                                  stored_features.c.audio_id.in_(ids[i:i + 500]))
                for m in conn.execute(q).mappings():
                    out[m["audio_id"]] = StoredFeatures(
                        m["windows"], bytes(m["data"]),
                        json.loads(m["raw_scores"]) if m["raw_scores"] else {},
                        bytes(m["timeline"]) if m["timeline"] is not None else None)
        return out

    def count_features(self, base_version: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(stored_features)
                                    .where(stored_features.c.base_version == base_version)).scalar_one())

    # --- writes ------------------------------------------------------------------------------

    def put_features(self, audio_id: str, base_version: str, stored: StoredFeatures) -> None:
        """Keep an audio's features (the first analysis wins: the same audio gives the same;
        a timeline is added to features stored before there were timelines)."""
        with self.engine.begin() as conn:
            put_row(conn, stored_features, {"audio_id": audio_id, "base_version": base_version},
                    {}, {"windows": stored.windows, "data": stored.data,
                         "raw_scores": json.dumps(stored.raw_scores), "created_at": time.time(),
                         "timeline": stored.timeline})
            if stored.timeline is not None:
                conn.execute(update(stored_features).where(
                    stored_features.c.audio_id == audio_id,
                    stored_features.c.base_version == base_version,
                    stored_features.c.timeline.is_(None)).values(timeline=stored.timeline))

    def upsert(self, path: str, **values: Any) -> None:
        now = time.time()
        values = _encode({**values, "updated_at": now})
        with self.engine.begin() as conn:
            self._upsert(conn, path, values, now)

    @staticmethod
    def _upsert(conn: Connection, path: str, values: dict[str, Any], now: float) -> None:
        put_row(conn, tracks, {"path": encode_path(path)}, values,
                {"created_at": now, "status": "pending"})

    # --- is it still there? ---------------------------------------------------------------------

    def lost(self, thorough: bool = False) -> str | None:
        """Why this cache can no longer record anything (in plain words), else None.

        A SQLite file deleted under a running process is still written through its open
        descriptor, into nothing; one replaced or overwritten is another file now. Each is
        seen here: the path no longer names the file opened, or holds no SQLite header.
        ``thorough`` adds SQLite's ``quick_check`` (every page read: 14 ms for 10,000 tracks,
        22 MB, warm, against 6 µs without it; the daemon runs it on its heartbeat and at start). PostgreSQL:
        never lost (a dropped connection is replaced)."""
        if self._file is None or self._fd is None:
            return None
        where = self._file
        try:
            now = os.stat(where)
            held = os.fstat(self._fd)
            head = os.pread(self._fd, 16, 0)  # through our descriptor: see __init__
        except FileNotFoundError:
            return f"the cache database {where} was deleted"
        except OSError as e:
            return f"the cache database {where} cannot be read ({e.strerror})"
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return f"the cache database {where} was replaced by another file"
        if head != b"SQLite format 3\x00":
            return f"the cache database {where} was overwritten: it is no longer a database"
        if thorough:
            try:
                with self.engine.connect() as conn:
                    verdict = conn.exec_driver_sql("PRAGMA quick_check").scalar()
            except SQLAlchemyError as e:
                if is_damaged(e):
                    return f"the cache database {where} is damaged ({first_line(e)})"
                return None  # busy, locked: a machine's moment, not a lost cache
            if verdict != "ok":
                return f"the cache database {where} is damaged ({verdict})"
        return None

    def _recordable(self) -> None:
        why = self.lost()
        if why:
            raise CacheUnavailable(why, "damaged" if "damaged" in why or "overwritten" in why
                                   else "missing", self._file)

    # --- tag writes in flight (see schema.intents) ---------------------------------------------

    def begin_write(self, intent: Intent) -> None:
        """Record, durably, that ``intent.new`` is about to replace the file's genres: only
        into the database this cache opened (:meth:`lost`), so no genre is ever written
        that could not be undone."""
        self._recordable()
        with self.engine.begin() as conn:
            put_row(conn, intents, {"path": encode_path(intent.path)}, {
                "current": json.dumps(intent.current), "before": json.dumps(intent.before),
                "new": json.dumps(intent.new), "decision_key": intent.decision_key,
                "created_at": time.time(), "owner": self.owner})

    def finish_write(self, path: str, **values: Any) -> None:
        """Record the file's row and forget its intent, in one transaction."""
        now = time.time()
        with self.engine.begin() as conn:
            self._upsert(conn, path, _encode({**values, "updated_at": now}), now)
            conn.execute(delete(intents).where(intents.c.path == encode_path(path)))

    def drop_intent(self, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(intents).where(intents.c.path == encode_path(path)))

    def intents(self) -> list[Intent]:
        """Writes in flight or left by a killed process, oldest first."""
        q = select(intents).order_by(intents.c.created_at)
        with self.engine.connect() as conn:
            return [Intent(decode_path(m["path"]), json.loads(m["current"]), json.loads(m["before"]),
                           json.loads(m["new"]), m["decision_key"], m["owner"], m["created_at"])
                    for m in conn.execute(q).mappings()]

    def abandoned_intents(self) -> list[Intent]:
        """The writes this process may settle: its own, and those of processes known to have
        ended or silent past the lease. Another daemon's write in flight (a shared cache) is
        left to it: settled now, its "genres before" could be lost to a kill a moment later."""
        old = time.time() - owners.LEASE
        return [i for i in self.intents() if i.owner is None or i.owner == self.owner
                or i.created_at < old or owners.gone(i.owner)]

    def move(self, old: str, new: str, **values: Any) -> None:
        """A file moved or was renamed: its row follows it (replacing any row at ``new``). A
        write recorded at ``new`` before any analysis there (the beets plugin's, after an import
        moved the file) is the file's own, and is kept: else its genres would look like a
        person's."""
        now = time.time()
        old, new = encode_path(old), encode_path(new)
        with self.engine.begin() as conn:
            kept = conn.execute(select(tracks.c.genres_written, tracks.c.genres_before,
                                       tracks.c.written_at).where(
                tracks.c.path == new, tracks.c.genres_written.is_not(None),
                tracks.c.analysed_at.is_(None))).mappings().first()
            if kept is not None:
                values = {**values, **{k: json.loads(v) if k in _JSON and v else v
                                       for k, v in kept.items()}}
            conn.execute(delete(tracks).where(tracks.c.path == new))
            conn.execute(update(tracks).where(tracks.c.path == old)
                         .values(path=new, **_encode({**values, "updated_at": now})))

    def count_analysis(self, path: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(tracks).where(tracks.c.path == encode_path(path))
                         .values(analyses=tracks.c.analyses + 1))


def _absent(path: str) -> bool:
    """Nothing at ``path``, in a folder that exists or not. A file on the way (ENOTDIR) or a
    folder that cannot be read is not "absent": opening it says what is wrong."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        pass
    return False


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    _wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _wal(cur: Any) -> None:
    """Put the database in WAL mode (it stays so: later opens find it done). Turning a new
    database to WAL needs it to itself, and SQLite answers "database is locked" at once, not
    after the busy timeout, when another process is doing the same: two scans started together
    on a new cache failed 5 times in 40 (three processes). So it is tried again, up to the busy
    timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
