"""The page's reads of the cache (:mod:`tagger.web`): one page of decisions under filters, a
track by its row id, an album's tracks, the genres in the library. Paged and indexed (schema
v8: ``confidence``, ``updated_at``, ``status``), so a page of a 50,000-track cache is one
indexed query and one count, not a read of every row.

Rows are named by their id: a request never carries a path that reaches the file system.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import false, func, literal_column, select, true

from tagger.cache.schema import PERSON_KEY, UNWRITTEN, tracks
from tagger.cache.store import Cache, TrackRow, _row, encode_path

#: What a file's row says genre-tagger did with it (the page's "reason" filter), from the
#: cache alone: ``kept``, analysed and left as it was (a person's genres, or the same as ours);
#: ``corrected``, a person set its genres in the page; ``reverted``, put back by ``revert``.
Reason = Literal["all", "written", "abstained", "kept", "corrected", "reverted", "failed"]
REASONS: tuple[Reason, ...] = get_args(Reason)
#: Each reason in words (the page's list and its filter).
REASON_WORDS: dict[Reason, str] = {
    "all": "all", "written": "written by genre-tagger",
    "abstained": "abstained: no genre scored enough",
    "kept": "left alone: it has genres of its own (or ours already)",
    "corrected": "set by a person in the page", "reverted": "put back by revert",
    "failed": "failed"}
Order = Literal["confidence", "recent"]
ORDERS: tuple[Order, ...] = get_args(Order)
#: Rows a page lists: analysed or failed (pending and deleted files have no decision).
_LISTED = ("done", "abstained", "failed")


@dataclass(frozen=True)
class Filters:
    reason: Reason = "all"
    genre: str = ""  # chosen, written or seen on the file
    folder: str = ""  # a folder: files below it (whole names)
    album: str = ""  # an album key
    error: str = ""  # a failure's code
    order: Order = "confidence"  # least confident first, or most recently decided first


@dataclass(frozen=True)
class Listed:
    id: int
    row: TrackRow

    @property
    def reason(self) -> Reason:
        return reason_of(self.row)


def reason_of(row: TrackRow) -> Reason:
    if row.status == "failed":
        return "failed"
    if row.decision_key in ("reverted", "corrected"):
        return "reverted" if row.decision_key == "reverted" else "corrected"
    if row.genres_written is not None:
        return "written"
    return "abstained" if row.status == "abstained" else "kept"


def _where(f: Filters, dialect: str) -> list[Any]:
    """The filters as the v8 indexes hold them (:data:`PERSON_KEY`, :data:`UNWRITTEN`)."""
    c = tracks.c
    where: list[Any] = [c.status.in_(_LISTED)]
    if f.reason == "failed":
        where.append(c.status == "failed")
    elif f.reason in ("corrected", "reverted"):
        where.append(PERSON_KEY == literal_column(f"'{f.reason}'"))  # noqa: SIM300
    elif f.reason != "all":
        where += [c.status != "failed", PERSON_KEY.is_(None)]
        if f.reason == "written":
            where.append(UNWRITTEN == false())  # noqa: SIM300 (the indexed term)
        else:
            where += [UNWRITTEN == true(),  # noqa: SIM300
                      c.status == ("abstained" if f.reason == "abstained" else "done")]
    if f.genre:  # the genres are JSON text: these rows are read (50,000: 35 ms more)
        quoted = json.dumps(f.genre)  # as the JSON columns hold it
        where.append(c.genres_chosen.contains(quoted, autoescape=True)
                     | c.genres_written.contains(quoted, autoescape=True)
                     | c.genres_seen.contains(quoted, autoescape=True))
    if f.folder:
        prefix = encode_path(f.folder.rstrip("/") + "/")
        where.append(c.path.startswith(prefix, autoescape=True))
        if dialect == "sqlite":  # its LIKE ignores case and no index: a range of the path index
            where += [c.path >= prefix, c.path < prefix[:-1] + chr(ord("/") + 1)]
    if f.album:
        where.append(c.album_key == f.album)
    if f.error:
        where.append(c.error_code == f.error)
    return where


#: A list's columns: not the scores (3-4 KB of JSON a row, read for every row a page skips).
_UNREAD = {"raw_scores": None, "genre_scores": None}
_LIST_COLUMNS = [c for c in tracks.c if c.name not in _UNREAD]


def decisions(cache: Cache, f: Filters, offset: int, limit: int) -> tuple[list[Listed], int]:
    """One page of rows under ``f`` and how many there are in all."""
    where = _where(f, cache.engine.dialect.name)
    c = tracks.c
    if f.order == "recent":
        order: list[Any] = [c.updated_at.desc(), c.id.desc()]
    else:  # rows without scores (failures) first on both databases, as SQLite sorts NULL
        first = c.confidence.asc()
        order = [first.nulls_first() if cache.engine.dialect.name == "postgresql" else first,
                 c.id]
    # The page's ids from the index alone (an OFFSET steps over the rows it skips: over the
    # index that is 25,000 small entries, over the table 25,000 rows of scores), then its rows.
    q = select(c.id).where(*where).order_by(*order).offset(offset).limit(limit)
    with cache.engine.connect() as conn:
        ids = list(conn.execute(q).scalars())
        found = {m["id"]: m for m in conn.execute(select(*_LIST_COLUMNS).where(c.id.in_(ids)))
                 .mappings()}
        # counted over the ordered ids: SQLite then counts in the index (17 ms for 29,000
        # rows), where a plain count reads the rows (80 ms)
        ordered = select(c.id).where(*where).order_by(*order).subquery()
        total = conn.execute(select(func.count()).select_from(ordered)).scalar_one()
    rows = [Listed(i, _row({**found[i], **_UNREAD})) for i in ids if i in found]
    return rows, int(total)


def track(cache: Cache, id: int) -> Listed | None:
    with cache.engine.connect() as conn:
        m = conn.execute(select(tracks).where(tracks.c.id == id)).mappings().first()
    return Listed(m["id"], _row(m)) if m else None


def album(cache: Cache, key: str) -> list[Listed]:
    """The tracks of one album (by its key), in path order."""
    q = select(tracks).where(tracks.c.album_key == key, tracks.c.status != "deleted")
    with cache.engine.connect() as conn:
        return [Listed(m["id"], _row(m)) for m in conn.execute(q.order_by(tracks.c.path)).mappings()]


@dataclass(frozen=True)
class Genres:
    """The genres in the library, as the cache last saw the files (nothing is opened)."""

    ours: Counter[str]  # genre -> files carrying it from genre-tagger
    theirs: Counter[str]  # genre -> files carrying it from a person
    tagged: int  # files carrying genre-tagger's genres
    unseen: int  # files not seen since v8 (their genres are not known here)


def library_genres(cache: Cache) -> Genres:
    """Counted per distinct set of genres (a library has a few hundred, not 50,000); this
    reads the rows (the genres are JSON text): 200 ms for 50,000 tracks, so the page keeps it
    a while."""
    c = tracks.c
    decided = c.status.in_(("done", "abstained"))
    ours: Counter[str] = Counter()
    theirs: Counter[str] = Counter()
    tagged = unseen = 0
    q = (select(c.genres_written, c.genres_seen, func.count()).where(decided)
         .group_by(c.genres_written, c.genres_seen))
    with cache.engine.connect() as conn:
        for written, seen, n in conn.execute(q):
            if written is not None:
                ours.update({g: n for g in json.loads(written)})
                tagged += n
            elif seen is not None:
                theirs.update({g: n for g in json.loads(seen)})
            else:
                unseen += n
    return Genres(ours, theirs, tagged, unseen)


__all__ = ["ORDERS", "REASONS", "REASON_WORDS", "Filters", "Genres", "Listed", "Order", "Reason",
           "album", "decisions", "library_genres", "reason_of", "track"]
