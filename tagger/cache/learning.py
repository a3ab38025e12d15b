"""What learning decided, kept in the cache (:data:`tagger.cache.schema.learning`).

Rows are only ever added. The model in use for a ``model`` setting is the one its newest row
names, so switching, refusing and going back are each one row, and every model a switch
replaced stays in the database (and so one command can go back to it, on any machine sharing
the cache). Only one process learns at a time: a lease in ``meta`` (two daemons on one
PostgreSQL cache, or ``genre-tagger learn`` while the daemon learns).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from tagger.cache import owners
from tagger.cache.schema import learning, meta
from tagger.cache.store import Cache
from tagger.errors import LearningMoved

Decided = Literal["switched", "kept", "back"]
#: A learner that has not said it is alive for this long has died (a kill -9): its lease ends.
LEASE_SECONDS = 900.0
_LEASE_KEY = "learning:lease"
#: Decisions for one setting are added one at a time (PostgreSQL: a transaction-scoped lock).
_RECORD_LOCK = 0x6C6561726E


def _looked_key(setting: str) -> str:
    """One "last looked" per ``model`` setting (``meta.key`` holds 40 characters)."""
    return "learning:looked:" + hashlib.sha256(setting.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Learnt:
    """One decision (see the table's columns); the model file's bytes are read on demand."""

    id: int
    created_at: float
    setting: str
    decision: Decided
    in_use: int | None
    previous: int | None
    version: str | None
    current_version: str | None
    songs: int | None
    compared: int | None
    current_right: float | None
    candidate_right: float | None
    current_answered: float | None
    candidate_answered: float | None
    margin: float | None
    digest: str | None
    why: str
    decided_by: str | None


_COLUMNS = [c for c in learning.c if c.name not in ("data", "trained_on")]


def _learnt(m: Any) -> Learnt:
    return Learnt(**{c.name: m[c.name] for c in _COLUMNS})


class Decisions:
    """The ``learning`` table of one cache."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    # --- reads ---------------------------------------------------------------------------------

    def latest(self, setting: str) -> Learnt | None:
        """The newest decision for this ``model`` setting (None: learning never decided)."""
        q = (select(*_COLUMNS).where(learning.c.setting == setting)
             .order_by(learning.c.id.desc()).limit(1))
        with self.cache.engine.connect() as conn:
            m = conn.execute(q).mappings().first()
        return _learnt(m) if m else None

    def history(self, setting: str, limit: int = 20) -> list[Learnt]:
        """The newest decisions for this ``model`` setting, newest first (the page's list)."""
        q = (select(*_COLUMNS).where(learning.c.setting == setting)
             .order_by(learning.c.id.desc()).limit(limit))
        with self.cache.engine.connect() as conn:
            return [_learnt(m) for m in conn.execute(q).mappings()]

    def get(self, id: int) -> Learnt | None:
        with self.cache.engine.connect() as conn:
            m = conn.execute(select(*_COLUMNS).where(learning.c.id == id)).mappings().first()
        return _learnt(m) if m else None

    def in_use(self, setting: str, last: Learnt | None = None) -> Learnt | None:
        """The switch whose model is in use for this setting (None: the setting's own model);
        ``last``: the newest decision, when the caller has just read it (one query fewer)."""
        last = last if last is not None else self.latest(setting)
        return self.get(last.in_use) if last is not None and last.in_use is not None else None

    def model_file(self, id: int) -> bytes | None:
        """The bytes of the model file a switch kept."""
        with self.cache.engine.connect() as conn:
            data = conn.execute(select(learning.c.data).where(learning.c.id == id)).scalar()
        return bytes(data) if data is not None else None

    def trained_on(self, id: int) -> tuple[set[str], set[str]]:
        """The songs (audio and labels, :func:`tagger.training.learning.song_key`) and the
        groups (artists, albums, folders) a switched model learnt from."""
        with self.cache.engine.connect() as conn:
            raw = conn.execute(select(learning.c.trained_on).where(learning.c.id == id)).scalar()
        doc = json.loads(raw) if raw else {}
        return set(doc.get("songs", ())), set(doc.get("groups", ()))

    # --- writes --------------------------------------------------------------------------------

    def record(self, setting: str, decision: Decided, why: str, *, after: int | None,
               in_use: int | None, previous: int | None, data: bytes | None = None,
               trained_songs: list[str] | None = None,
               trained_groups: list[str] | None = None, **values: Any) -> Learnt:
        """Add one decision, if the newest for ``setting`` is still ``after`` (the one the
        caller decided from; None: none yet), else :class:`LearningMoved`: a ``learn --back`` while a
        round trained is never undone by that round. A switch names itself as the model in
        use (one transaction: no reader sees a switch without its model)."""
        row = {"created_at": time.time(), "setting": setting, "decision": decision, "why": why,
               "in_use": in_use, "previous": previous, "data": data,
               "trained_on": json.dumps({"songs": sorted(trained_songs),
                                         "groups": sorted(trained_groups or ())})
               if trained_songs is not None else None,
               "decided_by": self.cache.owner, **values}
        with self.cache.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _RECORD_LOCK})
            elif conn.dialect.name == "sqlite" and not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock before the read
            newest = conn.execute(select(learning.c.id).where(learning.c.setting == setting)
                                  .order_by(learning.c.id.desc()).limit(1)).scalar()
            if newest != after:
                raise LearningMoved(f"another decision was recorded for {setting} meanwhile")
            key = conn.execute(insert(learning).values(**row)).inserted_primary_key
            assert key is not None
            id = int(key[0])
            if decision == "switched":
                conn.execute(update(learning).where(learning.c.id == id).values(in_use=id))
        found = self.get(id)
        assert found is not None
        return found

    # --- one learner at a time ----------------------------------------------------------------

    def claim(self, seconds: float = LEASE_SECONDS) -> str | None:
        """Take the learning lease; None when taken, else who holds it (in words)."""
        now = time.time()
        mine = json.dumps({"by": self.cache.owner, "until": now + seconds})
        with self.cache.engine.begin() as conn:
            held = conn.execute(select(meta.c.value).where(meta.c.key == _LEASE_KEY)).scalar()
            if held is not None:
                doc = json.loads(held)
                by = str(doc.get("by"))
                if by != self.cache.owner and float(doc.get("until", 0)) > now \
                        and not owners.gone(by):
                    return by
                # lapsed, its holder known to have ended (a kill -9 on this machine), or ours:
                # taken only if it is still the value just read
                conn.execute(delete(meta).where(meta.c.key == _LEASE_KEY, meta.c.value == held))
        try:
            with self.cache.engine.begin() as conn:
                conn.execute(insert(meta).values(key=_LEASE_KEY, value=mine))
        except IntegrityError:  # another process took it between the two
            return "another process"
        return None

    def release(self) -> None:
        with self.cache.engine.begin() as conn:
            held = conn.execute(select(meta.c.value).where(meta.c.key == _LEASE_KEY)).scalar()
            if held is not None and json.loads(held).get("by") == self.cache.owner:
                conn.execute(delete(meta).where(meta.c.key == _LEASE_KEY, meta.c.value == held))

    # --- when it last looked ------------------------------------------------------------------

    def looked(self, setting: str, said: str) -> None:
        """Remember the last look at the labels (whether or not it decided): when the daemon
        looks next, and what ``status`` says meanwhile."""
        doc = json.dumps({"at": time.time(), "setting": setting, "said": said})
        with self.cache.engine.begin() as conn:
            conn.execute(delete(meta).where(meta.c.key == _looked_key(setting)))
            conn.execute(insert(meta).values(key=_looked_key(setting), value=doc))

    def last_look(self, setting: str) -> dict[str, Any] | None:
        """When learning last looked at the labels for this setting, and what it said."""
        with self.cache.engine.connect() as conn:
            raw = conn.execute(select(meta.c.value)
                               .where(meta.c.key == _looked_key(setting))).scalar()
        return json.loads(raw) if raw else None


__all__ = ["Decided", "Decisions", "Learnt"]
