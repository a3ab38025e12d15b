"""Tables and migrations. Schema changes are migrated in place, never dropped: each step moves
the database one version up, and ``meta.schema_version`` says where it is."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    case,
    inspect,
    literal_column,
    select,
    text,
)
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.elements import Grouping

metadata = MetaData()

tracks = Table(
    "tracks", metadata,
    Column("id", Integer, primary_key=True),
    Column("path", Text, nullable=False, unique=True),
    Column("size", BigInteger),  # v6: BIGINT (PostgreSQL's INTEGER is 32 bits; mtime_ns is not)
    Column("mtime_ns", BigInteger),
    Column("audio_id", String(80), index=True),
    Column("model_version", Text),  # v6: TEXT (a trained model's version carries its file name)
    Column("raw_scores", Text),  # JSON {tag: score}
    Column("genre_scores", Text),  # JSON {genre: score}
    Column("genres_chosen", Text),  # JSON [genre, ...] under the last selection
    Column("genres_before", Text),  # JSON: the file's genres before our first write; NULL: never wrote
    Column("genres_written", Text),  # JSON: what we last wrote; NULL: never wrote (or reverted)
    Column("decision_key", Text),  # policy + selection the file was last decided under (v6: TEXT)
    Column("status", String(16), nullable=False, default="pending"),  # pending|done|abstained|failed|deleted
    Column("error_code", String(40)),
    Column("error_reason", Text),
    Column("created_at", Float),
    Column("analysed_at", Float),
    Column("written_at", Float),
    Column("updated_at", Float),
    Column("analyses", Integer, nullable=False, default=0),  # v2: how often the model ran on it
    Column("album_key", Text, index=True),  # v5: which album it belongs to (scan --album)
    # v8: the top genre score (what the page's "least confident first" sorts on)
    Column("confidence", Float),
    # v8: JSON: the file's genres when genre-tagger last read or wrote them (NULL: not since
    # v8), so the page can count a person's genres without opening every file
    Column("genres_seen", Text),
)

#: v8: the page's filters, as the indexes below hold them: which person's key a row has
#: (corrected, reverted, or NULL) and whether genre-tagger's genres are on it. Short values
#: (not the JSON or the decision key themselves: PostgreSQL refuses index entries over 2.7 KB,
#: and a file's genres can be any length). Written with literals, not parameters, so a query's
#: terms are the indexed expressions and SQLite answers from the index.
PERSON_KEY = case((tracks.c.decision_key.in_((literal_column("'corrected'"),
                                              literal_column("'reverted'"))),
                   tracks.c.decision_key))
UNWRITTEN = tracks.c.genres_written.is_(None)
# (in parentheses: PostgreSQL takes an expression in an index only so)
_FILTERED = (tracks.c.id, tracks.c.status, tracks.c.error_code, Grouping(PERSON_KEY),
             Grouping(UNWRITTEN))
# v8: the page's two orders with what its filters read, so a page and its count read an index,
# not the rows (a row holds 3-4 KB of scores: on 50,000 tracks a count over the rows took
# 80 ms, over the index 17 ms). (An index on status alone made SQLite sort all 50,000 rows for
# each page: 260 ms.)
Index("ix_tracks_confidence", tracks.c.confidence, *_FILTERED)
Index("ix_tracks_updated_at", tracks.c.updated_at, *_FILTERED)

#: v2: the daemon's persistent work queue: a kill -9 loses nothing that was queued.
queue = Table(
    "queue", metadata,
    Column("path", Text, primary_key=True),
    Column("reason", String(20)),  # new | changed | moved | reconcile | retry
    Column("enqueued_at", Float, nullable=False),
    Column("not_before", Float, nullable=False, default=0.0),  # backoff for transient errors
    Column("attempts", Integer, nullable=False, default=0),
    # v6: which daemon is working on it since when (several daemons may share one queue)
    Column("claimed_by", Text),
    Column("claimed_at", Float),
)

#: v2-v5: what the one daemon said about itself; kept, not used since v6 (see ``daemons``).
daemon = Table(
    "daemon", metadata,
    Column("key", String(40), primary_key=True),
    Column("value", Text),
)

#: v6: what each daemon says about itself, one row per daemon run (several may share a database).
daemons = Table(
    "daemons", metadata,
    Column("id", String(200), primary_key=True),  # host:pid:start (tagger.cache.queue.daemon_id)
    Column("state", Text, nullable=False),  # JSON: state, pid, host, roots, processed, heartbeat...
    Column("updated_at", Float, nullable=False),
)

#: v3: a tag write in flight, recorded (committed) before the rename and removed in the same
#: transaction that records the write; one left behind by a kill is resolved at the next start,
#: so the genres before our first write are never lost and our write is never taken for a
#: person's edit.
intents = Table(
    "intents", metadata,
    Column("path", Text, primary_key=True),
    Column("current", Text, nullable=False),  # JSON: the file's genres just before this write
    Column("before", Text, nullable=False),  # JSON: what revert restores (before our first write)
    Column("new", Text, nullable=False),  # JSON: what is being written
    Column("decision_key", Text),
    Column("created_at", Float, nullable=False),
    # v6: the writing process (tagger.cache.owners): another process settles its intents only
    # once it is known to have ended, or after the lease
    Column("owner", Text),
)

#: v4: the base model's pooled features of each audio (by audio identity, not path: copies and
#: moves share them), so training and a new trained model's predictions decode nothing again.
features = Table(
    "features", metadata,
    Column("audio_id", String(80), primary_key=True),
    Column("base_version", String(80), primary_key=True),
    Column("windows", Integer, nullable=False),  # windows the instances were averaged from
    Column("data", LargeBinary, nullable=False),  # tagger.analysis.embedding.pack, <= 32 KB
    Column("raw_scores", Text),  # JSON {tag: score}: the base model's, for zero-shot baselines
    Column("created_at", Float, nullable=False),
    Column("timeline", LargeBinary),  # v5: raw scores window by window (embedding.pack_timeline)
)

#: v7: what learning decided (``genre-tagger learn``, the daemon with ``learn = true``): one row
#: per decision, never changed afterwards. The model in use for a ``model`` setting is the one
#: the newest row of that setting names (``in_use``: a row whose candidate it is; NULL: the
#: setting's own model), so going back is one more row, and every earlier model is kept.
learning = Table(
    "learning", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", Float, nullable=False),
    Column("setting", Text, nullable=False),  # the ``model`` setting it was learned against
    Column("decision", String(16), nullable=False),  # switched | kept | back
    Column("in_use", Integer),  # the row whose candidate is in use after it; NULL: the setting's
    Column("previous", Integer),  # the same, before it
    Column("version", Text),  # the candidate's model version (its file's name and hash)
    Column("data", LargeBinary),  # the candidate's model file, byte for byte
    Column("current_version", Text),  # the model it was compared with (in use then)
    Column("songs", Integer),  # labelled songs the candidate learnt from
    Column("compared", Integer),  # held-out songs both were judged on
    Column("current_right", Float), Column("candidate_right", Float),  # share judged right
    Column("current_answered", Float), Column("candidate_answered", Float),
    Column("margin", Float),  # how much better the candidate had to be
    Column("digest", Text),  # the labels it learnt from (unchanged labels: nothing to learn)
    Column("trained_on", Text),  # JSON: its songs (audio and labels): not judged on them again
    Column("why", Text, nullable=False),  # the decision in words
    Column("decided_by", Text),  # the process (tagger.cache.owners) or the command
)

meta = Table(
    "meta", metadata,
    Column("key", String(40), primary_key=True),
    Column("value", Text),
)

SCHEMA_VERSION = 8
#: The advisory lock's key on PostgreSQL (any constant that is ours).
_MIGRATION_LOCK = 0x67656E7265


def _v0_to_v1(conn: Connection) -> None:
    metadata.create_all(conn)  # creates the current shape; later steps then skip what exists


def _v1_to_v2(conn: Connection) -> None:
    cols = {c["name"] for c in inspect(conn).get_columns("tracks")}
    if "analyses" not in cols:
        conn.execute(text("ALTER TABLE tracks ADD COLUMN analyses INTEGER NOT NULL DEFAULT 0"))
        conn.execute(text("UPDATE tracks SET analyses = 1 WHERE analysed_at IS NOT NULL"))
    queue.create(conn, checkfirst=True)
    daemon.create(conn, checkfirst=True)


def _v2_to_v3(conn: Connection) -> None:
    intents.create(conn, checkfirst=True)


def _v3_to_v4(conn: Connection) -> None:
    features.create(conn, checkfirst=True)


def _v4_to_v5(conn: Connection) -> None:
    if "album_key" not in {c["name"] for c in inspect(conn).get_columns("tracks")}:
        conn.execute(text("ALTER TABLE tracks ADD COLUMN album_key TEXT"))
    # Apart: SQLite commits each DDL statement, so a kill between the two must still get it.
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_tracks_album_key ON tracks (album_key)"))
    if "timeline" not in {c["name"] for c in inspect(conn).get_columns("features")}:
        blob = features.c.timeline.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE features ADD COLUMN timeline {blob}"))


def _v5_to_v6(conn: Connection) -> None:
    cols = {c["name"]: c for c in inspect(conn).get_columns("queue")}
    for name, kind in (("claimed_by", "TEXT"), ("claimed_at", queue.c.claimed_at.type)):
        if name not in cols:
            sql = kind if isinstance(kind, str) else kind.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE queue ADD COLUMN {name} {sql}"))
    if "owner" not in {c["name"] for c in inspect(conn).get_columns("intents")}:
        conn.execute(text("ALTER TABLE intents ADD COLUMN owner TEXT"))
    daemons.create(conn, checkfirst=True)
    if conn.dialect.name == "postgresql":
        # SQLite stores any integer and any text length in these; PostgreSQL would refuse an
        # mtime in nanoseconds and a long model or decoder version.
        conn.execute(text("ALTER TABLE tracks ALTER COLUMN size TYPE BIGINT, "
                          "ALTER COLUMN mtime_ns TYPE BIGINT, ALTER COLUMN model_version TYPE TEXT, "
                          "ALTER COLUMN decision_key TYPE TEXT"))
        conn.execute(text("ALTER TABLE intents ALTER COLUMN decision_key TYPE TEXT"))


def _v6_to_v7(conn: Connection) -> None:
    learning.create(conn, checkfirst=True)


def _v7_to_v8(conn: Connection) -> None:
    cols = {c["name"] for c in inspect(conn).get_columns("tracks")}
    if "confidence" not in cols:
        real = tracks.c.confidence.type.compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE tracks ADD COLUMN confidence {real}"))
    if "genres_seen" not in cols:
        conn.execute(text("ALTER TABLE tracks ADD COLUMN genres_seen TEXT"))
    # Every row's top score, 2,000 rows at a time in id order (50,000 rows: about a second).
    last = -1
    while True:
        todo = conn.execute(select(tracks.c.id, tracks.c.genre_scores).where(
            tracks.c.id > last, tracks.c.genre_scores.is_not(None))
            .order_by(tracks.c.id).limit(2000)).all()
        if not todo:
            break
        last = todo[-1][0]
        conn.execute(tracks.update().where(tracks.c.id == bindparam("row_id"))
                     .values(confidence=bindparam("top")),
                     [{"row_id": i, "top": top_score(json.loads(g))} for i, g in todo])
    for index in tracks.indexes:
        if index.name in ("ix_tracks_confidence", "ix_tracks_updated_at"):
            conn.execute(CreateIndex(index, if_not_exists=True))


def top_score(genre_scores: dict[str, float]) -> float:
    """A row's confidence: its strongest genre's score (0 for none or not a number, so it
    sorts first; SQLite would store a NaN as NULL)."""
    top = max((v for v in genre_scores.values() if math.isfinite(v)), default=0.0)
    return float(top)


#: MIGRATIONS[n] takes a database at version n to version n + 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {0: _v0_to_v1, 1: _v1_to_v2, 2: _v2_to_v3,
                                                       3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6,
                                                       6: _v6_to_v7, 7: _v7_to_v8}


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table("meta"):
        return 0
    row = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def migrate(conn: Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; refuse a database from a newer release.

    Several processes may open a new or old database at once (daemons started together, on
    several machines with PostgreSQL): one migrates while the others wait, then find it done.
    PostgreSQL: a transaction-scoped advisory lock (its DDL is transactional). SQLite: the write
    lock taken up front (Python's driver would otherwise run each CREATE on its own, and a
    second process would find half a schema).
    """
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"the cache database is schema version {version}, newer than this "
                           f"genre-tagger ({SCHEMA_VERSION}); upgrade genre-tagger")
    if version == SCHEMA_VERSION:
        return version  # the usual case: no lock (a reader such as `status` takes none)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    elif conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    version = current_version(conn)  # another process may have just done it
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
        conn.execute(text("DELETE FROM meta WHERE key = 'schema_version'"))
        conn.execute(meta.insert().values(key="schema_version", value=str(version)))
    return version
