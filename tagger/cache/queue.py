"""The daemon's work queue and published state, in the cache database: a kill -9 at any moment
loses nothing, and several daemons (on several machines, sharing a PostgreSQL cache) may share
one queue without analysing a file twice.

A path leaves the queue only after its outcome is in the cache; after a crash the batch that was
in flight is simply taken again, and the cache's stat check makes that free for files finished
just before the crash. A daemon *claims* what it takes (one statement: ``UPDATE ... WHERE path
IN (SELECT ... FOR UPDATE SKIP LOCKED)`` on PostgreSQL, so two daemons never wait on, or take,
the same rows); the daemon renews its claims every ``HEARTBEAT`` seconds; they lapse after
:data:`LEASE` seconds without renewal (a daemon that died elsewhere), or at once when its end
is known (:func:`tagger.cache.owners.gone`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from tagger.cache import owners
from tagger.cache.owners import HEARTBEAT, LEASE
from tagger.cache.schema import daemons, queue
from tagger.cache.store import Cache, decode_path, encode_path, put_new_rows, put_row
from tagger.stopping import Stop

#: Backoff for transient errors (a locked or changing file): 30 s, 1, 2, 4 ... up to 1 h.
BACKOFF_BASE = 30.0
BACKOFF_MAX = 3600.0
MAX_ATTEMPTS = 8


def running(doc: dict[str, Any], now: float, stale: float) -> bool:
    """Whether a published daemon (a :meth:`DaemonState.all` document) still runs: it spoke
    within ``stale`` seconds (daemons say so every ``HEARTBEAT`` s), and where its process can
    be asked, it is there."""
    if doc.get("state") != "running" or now - float(doc.get("heartbeat") or 0.0) >= stale:
        return False
    return not owners.gone(str(doc.get("id", "")))


class WorkQueue:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        #: Who claims what :meth:`take` returns (this process: :func:`owners.process_id`).
        self.owner = cache.owner

    def put(self, path: str, reason: str) -> None:
        """Queue ``path`` (again): a path is in the queue at most once. Queued again (it changed
        and settled since), a path backing off is due at once; its attempts still count."""
        with self.cache.engine.begin() as conn:
            put_row(conn, queue, {"path": encode_path(path)}, {"not_before": 0.0},
                    {"reason": reason, "enqueued_at": time.time(), "attempts": 0})

    def take(self, limit: int, under: tuple[str, ...] = ()) -> list[str]:
        """Claim the oldest due paths that no other process holds, oldest first, only below
        the folders ``under`` when given (a scan of other folders queues its files here too).
        They stay queued (and claimed) until :meth:`done`, :meth:`retry_later` or
        :meth:`later`."""
        now = time.time()
        free = self._free(now)
        where = [queue.c.not_before <= now, free]
        if under:  # a name stored base64-encoded is looked at by whoever takes it
            where.append(or_(queue.c.path.startswith("b64:"), *[
                queue.c.path.startswith(encode_path(os.path.join(os.path.abspath(u), "")),
                                        autoescape=True) for u in under]))
        due = (select(queue.c.path).where(*where)
               .order_by(queue.c.enqueued_at, queue.c.path).limit(limit)
               .with_for_update(skip_locked=True))  # PostgreSQL; SQLite has one writer anyway
        claim = (update(queue).where(queue.c.path.in_(due.scalar_subquery()), free)
                 .values(claimed_by=self.owner, claimed_at=now))
        with self.cache.engine.begin() as conn:
            if conn.dialect.update_returning:
                got = conn.execute(claim.returning(queue.c.path, queue.c.enqueued_at)).all()
            else:  # SQLite before 3.35: what this statement claimed carries its time
                conn.execute(claim)
                got = conn.execute(select(queue.c.path, queue.c.enqueued_at).where(
                    queue.c.claimed_by == self.owner, queue.c.claimed_at == now)).all()
        return [decode_path(p) for p, _ in sorted(got, key=lambda r: (r[1], r[0]))]

    def claim(self, paths: list[str], reason: str) -> set[str]:
        """Claim ``paths`` for a front door that found them itself (``scan``, the beets
        plugin): queued ones that no other process holds, and new rows for the rest, all
        claimed by this process in one transaction per 500. Returns what it holds now; the
        others are another process's (a daemon, a second scan) until it is done with them."""
        now = time.time()
        got: set[str] = set()
        encoded = [encode_path(p) for p in dict.fromkeys(paths)]
        with self.cache.engine.begin() as conn:
            for i in range(0, len(encoded), 500):
                chunk = encoded[i:i + 500]
                put_new_rows(conn, queue, "path", [
                    {"path": p, "reason": reason, "enqueued_at": now, "attempts": 0,
                     "not_before": 0.0, "claimed_by": self.owner, "claimed_at": now}
                    for p in chunk])
                conn.execute(update(queue).where(queue.c.path.in_(chunk), self._free(now))
                             .values(claimed_by=self.owner, claimed_at=now))
                got.update(conn.execute(select(queue.c.path).where(
                    queue.c.path.in_(chunk), queue.c.claimed_by == self.owner)).scalars())
        return {decode_path(p) for p in got}

    def _free(self, now: float) -> Any:
        """Rows this process may claim: nobody's, its own, or a claim that lapsed."""
        return or_(queue.c.claimed_by.is_(None), queue.c.claimed_by == self.owner,
                   queue.c.claimed_at < now - LEASE)

    def renew(self) -> None:
        """Keep this daemon's claims (it is still working on them)."""
        with self.cache.engine.begin() as conn:
            conn.execute(update(queue).where(queue.c.claimed_by == self.owner)
                         .values(claimed_at=time.time()))

    def release(self, drop: str | None = None) -> None:
        """Give back this process's claims (it stops, or cannot analyse now): others take
        them. Rows it queued itself with reason ``drop`` (a scan's: nobody else asked for
        them) leave the queue instead."""
        mine = queue.c.claimed_by == self.owner
        with self.cache.engine.begin() as conn:
            if drop is not None:
                conn.execute(delete(queue).where(mine, queue.c.reason == drop))
            conn.execute(update(queue).where(mine).values(claimed_by=None, claimed_at=None))

    def release_dead(self) -> int:
        """Free the claims of daemons known to have ended (a kill -9 on this machine, or
        before its last reboot): their files are taken again now, not after the lease."""
        with self.cache.engine.begin() as conn:
            held = conn.execute(select(queue.c.claimed_by).distinct()
                                .where(queue.c.claimed_by.is_not(None))).scalars().all()
            dead = [o for o in held if o != self.owner and owners.gone(o)]
            if not dead:
                return 0
            return int(conn.execute(update(queue).where(queue.c.claimed_by.in_(dead))
                                    .values(claimed_by=None, claimed_at=None)).rowcount)

    def _mine(self) -> Any:
        """Rows this daemon may settle: its own claims, or nobody's (a lapsed claim now
        another daemon's is that one's to settle)."""
        return or_(queue.c.claimed_by == self.owner, queue.c.claimed_by.is_(None))

    def done(self, paths: list[str]) -> None:
        with self.cache.engine.begin() as conn:
            conn.execute(delete(queue).where(queue.c.path.in_([encode_path(p) for p in paths]),
                                             self._mine()))

    def retry_later(self, path: str) -> bool:
        """Back off a transient failure; False (and dropped) after too many attempts."""
        path = encode_path(path)
        with self.cache.engine.begin() as conn:
            attempts = conn.execute(select(queue.c.attempts)
                                    .where(queue.c.path == path, self._mine())).scalar()
            if attempts is None:  # gone, or another daemon's now: not ours to settle
                return False
            if attempts + 1 >= MAX_ATTEMPTS:
                conn.execute(delete(queue).where(queue.c.path == path, self._mine()))
                return False
            wait = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** attempts)
            conn.execute(update(queue).where(queue.c.path == path)
                         .values(attempts=attempts + 1, not_before=time.time() + wait,
                                 claimed_by=None, claimed_at=None))
        return True

    def later(self, path: str, seconds: float) -> None:
        """Look at ``path`` again in ``seconds`` (no attempt counted: it is waiting, not failing);
        any daemon may take it then."""
        with self.cache.engine.begin() as conn:
            conn.execute(update(queue).where(queue.c.path == encode_path(path), self._mine())
                         .values(not_before=time.time() + seconds, claimed_by=None,
                                 claimed_at=None))

    def __len__(self) -> int:
        with self.cache.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(queue)).scalar() or 0)

    def paths(self) -> list[str]:
        """Every queued path, due or backing off, claimed or not."""
        with self.cache.engine.connect() as conn:
            return [decode_path(p) for p in conn.execute(select(queue.c.path)).scalars()]


class Claims:
    """A front door's hold on the files it found itself (``scan``, the beets plugin): claimed
    through the queue exactly as a daemon's batches are, so a daemon or a second scan never
    analyses them too; renewed every ``HEARTBEAT`` s while it works, each settled when its
    outcome is recorded, the rest given back at the end (its own rows leave the queue)."""

    def __init__(self, work: WorkQueue, reason: str) -> None:
        self.work = work
        self.reason = reason
        self._stop = threading.Event()  # set by this thread, not a signal handler
        self._beat: threading.Thread | None = None

    def __enter__(self) -> Claims:
        self.work.release_dead()  # a killed scan's or daemon's files are free at once
        self._beat = threading.Thread(target=self._renew, name="claims", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=10)
        self.work.release(drop=self.reason)

    def claim(self, paths: list[str]) -> set[str]:
        return self.work.claim(paths, self.reason)

    def done(self, path: str) -> None:
        self.work.done([path])

    def rounds(self, paths: list[str], stop: Stop | None = None,
               on_wait: Callable[[int], None] | None = None
               ) -> Iterator[tuple[list[str], bool]]:
        """``paths`` in the rounds this process gets them, each with whether it waited for
        them: first all it can claim now, then, looking once a second, what the other process
        let go (``on_wait`` is told once how many it waits for; what was let go is usually
        done). Whoever takes a round settles each file with :meth:`done`."""
        left = list(dict.fromkeys(paths))
        waited = False
        while left:
            mine = self.claim(left)
            if mine:
                yield [p for p in left if p in mine], waited
                left = [p for p in left if p not in mine]
            if not left or (stop is not None and stop.is_set()):
                return
            if on_wait is not None and not waited:
                on_wait(len(left))
            waited = True
            for _ in range(10):  # a second, stop-aware
                if stop is not None and stop.is_set():
                    return
                time.sleep(0.1)

    def _renew(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                self.work.renew()
            except Exception:  # a database hiccup: the next beat tries again
                continue


class DaemonState:
    """What each daemon publishes about itself for ``genre-tagger status``: one JSON document
    per daemon run (see :data:`tagger.cache.schema.daemons`)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.owner = cache.owner
        self._doc: dict[str, Any] = {}
        self._lock = threading.Lock()  # the worker and the heartbeat both publish

    def set(self, **values: Any) -> None:
        """Merge ``values`` into this daemon's document."""
        with self._lock:
            self._doc.update(values)
            doc = json.dumps(self._doc)
        with self.cache.engine.begin() as conn:
            put_row(conn, daemons, {"id": self.owner}, {"state": doc, "updated_at": time.time()})

    def all(self) -> dict[str, dict[str, Any]]:
        """Every daemon's document, newest first, with its ``id``, ``host`` and ``pid``."""
        with self.cache.engine.connect() as conn:
            rows = conn.execute(select(daemons.c.id, daemons.c.state)
                                .order_by(daemons.c.updated_at.desc())).all()
        out: dict[str, dict[str, Any]] = {}
        for owner, state in rows:
            who = owners.parse(owner)
            out[owner] = {"id": owner, "host": who.host if who else owner,
                          "pid": who.pid if who else 0, **json.loads(state)}
        return out

    def forget_before(self, day_start: float) -> None:
        """Drop the documents of runs that stopped (or last spoke) before ``day_start``: today's
        count needs only today's runs."""
        with self.cache.engine.begin() as conn:
            conn.execute(delete(daemons).where(and_(daemons.c.updated_at < day_start,
                                                    daemons.c.id != self.owner)))


def overview(cache: Cache, status_seconds: float, now: float | None = None,
             summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``status`` shows (and ``status --json`` prints): the daemons that run now, on any
    machine sharing the cache (alive while they keep publishing: within 3 summary intervals,
    at least 3 minutes), their roots, folders watched each way and throughput; the queue; the
    files processed today by every run, killed ones too; failures by reason; the last errors.
    Read-only: it takes nothing from the queue."""
    import time

    now = time.time() if now is None else now
    docs = list(DaemonState(cache).all().values())
    summary = cache.summary() if summary is None else summary  # the page has it already
    live = [d for d in docs if running(d, now, max(180.0, 3 * status_seconds))]
    today = time.strftime("%Y-%m-%d", time.localtime(now))
    daemons = []
    for d in live:
        up = max(now - d.get("started_at", now), 1e-9)
        daemons.append({"host": d["host"], "pid": d["pid"], "roots": d.get("roots", []),
                        "watched": d.get("watched", {}), "up_seconds": int(up),
                        "learn": bool(d.get("learn", False)),
                        "processed": d.get("processed", 0),
                        "files_per_minute": round(d.get("processed", 0) / up * 60, 2)})
    return {"state": "running" if live else "not running" if docs else "never ran", "cache": "ok",
            "pid": daemons[0]["pid"] if daemons else None,
            "roots": sorted({r for d in daemons for r in d["roots"]})
            or (docs[0].get("roots", []) if docs else []),
            "queue": len(WorkQueue(cache)),
            "processed": sum(d["processed"] for d in daemons),
            "processed_today": sum(d.get("processed_today", 0) for d in docs
                                   if d.get("processed_day") == today),
            "files_per_minute": round(sum(d["files_per_minute"] for d in daemons), 2)
            if daemons else None,
            "watched": {k: sum(d["watched"].get(k, 0) for d in daemons)
                        for k in ("inotify", "polling")},
            "daemons": daemons, "failures": summary["failures"],
            "last_errors": cache.last_errors(5)}
