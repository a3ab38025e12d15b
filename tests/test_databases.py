"""The cache and the daemon's queue on every database they support: SQLite (a file) and a real
PostgreSQL server (tests/pgserver.py). Each test runs on both; concurrency is real processes."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tagger.cache import Cache
from tagger.cache.learning import Decisions
from tagger.cache.queue import LEASE, DaemonState, WorkQueue, running
from tagger.cache.schema import SCHEMA_VERSION
from tagger.cache.store import Intent, StoredFeatures

REPO = Path(__file__).resolve().parent.parent


def sql(url: str, statement: str) -> list[tuple]:  # type: ignore[type-arg]
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def children(script: str, args: list[list[str]], timeout: float = 120) -> list[str]:
    """Run ``script`` in one process per argument list, all started together; their stdouts."""
    start = time.time() + 1.5  # every child imported and connected before the first goes
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start), *a], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in args]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    return outs


def test_every_value_a_library_holds_round_trips(db_url: str) -> None:
    """Sizes past 2 GiB, mtimes in nanoseconds, a long trained-model version and decision key,
    a file name that is not UTF-8, blobs: what PostgreSQL's stricter types would refuse."""
    odd = os.fsdecode(b"/m/\xff\xfe caf\xc3\xa9\nnew line.flac")
    version = "my-model-" + "x" * 200 + "@0123456789ab"
    key = "overwrite|3|0.3|0.1|4|/|" + version + "|map:" + "f" * 64 + "|album"
    with Cache(db_url) as c:
        assert c.schema_version == SCHEMA_VERSION
        c.upsert(odd, size=3 * 2**31, mtime_ns=time.time_ns(), model_version=version,
                 decision_key=key, status="done", raw_scores={"rock": 0.5},
                 genre_scores={"Rock": 0.5}, genres_chosen=["Rock"], audio_id="pcm:1")
        row = c.get(odd)
        assert row is not None and row.size == 3 * 2**31 and row.mtime_ns > 2**60
        assert row.model_version == version and row.decision_key == key
        assert row.genres_chosen == ["Rock"]
        assert c.stat_index(paths=[odd])[odd].mtime_ns == row.mtime_ns
        assert [r.path for r in c.rows_under(["/m/"])] == [odd]
        assert [r.path for r in c.by_audio_id("pcm:1", version)] == [odd]
        c.move(odd, "/m/moved.flac", status="done")
        assert c.get(odd) is None and c.get("/m/moved.flac") is not None
        c.count_analysis("/m/moved.flac")
        assert c.get("/m/moved.flac").analyses == 1  # type: ignore[union-attr]
        c.upsert("/m/bad.mp3", status="failed", error_code="corrupt", error_reason="why")
        assert c.summary()["failures"] == {"corrupt": 1}
        assert c.last_errors(1)[0]["path"] == "/m/bad.mp3"
        assert list(c.decided()) == [("done", ["Rock"], {"Rock": 0.5})]
        # features: the first analysis wins; a timeline is added to features without one
        blob = bytes(range(256)) * 100
        c.put_features("pcm:1", "base@1", StoredFeatures(3, blob, {"t": 0.5}))
        c.put_features("pcm:1", "base@1", StoredFeatures(4, b"other", {"t": 0.1}, b"timeline"))
        got = c.features(["pcm:1", "pcm:2"], "base@1")
        assert list(got) == ["pcm:1"] and got["pcm:1"].data == blob and got["pcm:1"].windows == 3
        assert got["pcm:1"].timeline == b"timeline" and c.count_features("base@1") == 1
        # a write in flight, recorded again (a retry), then finished in one transaction
        c.begin_write(Intent(odd, ["A"], ["A"], ["B"], key))
        c.begin_write(Intent(odd, ["A"], ["A"], ["C"], key))
        assert [(i.path, i.new) for i in c.intents()] == [(odd, ["C"])]
        c.finish_write(odd, genres_written=["C"], status="done")
        assert c.intents() == [] and c.get(odd).genres_written == ["C"]  # type: ignore[union-attr]
        c.upsert("/m/a/1.flac", album_key="folder:/m/a")
        assert c.album_members(["folder:/m/a"]) == {"folder:/m/a": ["/m/a/1.flac"]}


def as_process(pid: int, host: str | None = None) -> str:
    """An owner name for process ``pid`` here (or on ``host``, another machine)."""
    from tagger.cache import owners

    parts = owners.process_id().split(":")
    parts[1] = str(pid)
    if host:
        parts[0], parts[3] = host, "a1b2c3.d4e5f6.123"
    return ":".join(parts)


def test_queue_claims_backoff_and_release(db_url: str) -> None:
    with Cache(db_url, owner=as_process(1, "here")) as c, \
            Cache(db_url, owner=as_process(2, "there")) as c2:
        a, b = WorkQueue(c), WorkQueue(c2)
        for i in range(6):
            a.put(f"/m/{i}.flac", "new")
        a.put("/m/0.flac", "changed")  # queued again: still once
        assert len(a) == 6
        first = a.take(4)
        assert first == [f"/m/{i}.flac" for i in range(4)]  # oldest first
        assert b.take(10) == ["/m/4.flac", "/m/5.flac"]  # never what another daemon holds
        assert b.take(10) == ["/m/4.flac", "/m/5.flac"]  # its own, again (after an error)
        assert a.take(10) == first
        # a retried or postponed path is free for anyone once due
        assert a.retry_later("/m/0.flac")
        a.later("/m/1.flac", 0.0)
        assert b.take(10) == ["/m/1.flac", "/m/4.flac", "/m/5.flac"]
        a.done(["/m/2.flac", "/m/3.flac"])
        b.done(["/m/1.flac", "/m/4.flac", "/m/5.flac"])
        assert a.paths() == ["/m/0.flac"] and a.take(10) == []  # backing off
        # a claim not renewed within the lease lapses (a daemon on another machine died)
        a.put("/m/6.flac", "new")
        assert a.take(1) == ["/m/6.flac"]
        sql(db_url, f"UPDATE queue SET claimed_at = claimed_at - {LEASE + 1}")
        assert b.take(1) == ["/m/6.flac"]
        b.renew()
        assert a.take(1) == []


def test_a_killed_daemons_claims_on_this_machine_are_freed_at_once(db_url: str) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # another machine's daemon with the very same pid: not asked, not freed
    with Cache(db_url, owner=as_process(dead.pid)) as c1, \
            Cache(db_url, owner=as_process(dead.pid, "another-host")) as c2, Cache(db_url) as c3:
        killed, elsewhere, me = WorkQueue(c1), WorkQueue(c2), WorkQueue(c3)
        for i in range(4):
            killed.put(f"/m/{i}.flac", "new")
        assert killed.take(2) == ["/m/0.flac", "/m/1.flac"]
        assert elsewhere.take(2) == ["/m/2.flac", "/m/3.flac"]
        assert me.take(10) == []
        assert me.release_dead() == 2  # the dead process's; the other machine's are left alone
        assert me.take(10) == ["/m/0.flac", "/m/1.flac"]
        # a lapsed claim now another's: the first holder's late "done" does not remove it
        sql(db_url, f"UPDATE queue SET claimed_at = claimed_at - {LEASE + 1} "
                    "WHERE path = '/m/2.flac'")
        assert me.take(10) == ["/m/0.flac", "/m/1.flac", "/m/2.flac"]
        assert not elsewhere.retry_later("/m/2.flac")  # nor its late backoff (or drop)
        elsewhere.done(["/m/2.flac", "/m/3.flac"])
        assert sorted(me.paths()) == ["/m/0.flac", "/m/1.flac", "/m/2.flac"]
        me.release()  # stopping: every claim of its goes back
        assert sorted(elsewhere.take(10)) == ["/m/0.flac", "/m/1.flac", "/m/2.flac"]


CLAIMER = r"""
import json, sys, time
from tagger.cache import Cache
from tagger.cache.queue import WorkQueue
start, url, owner = float(sys.argv[1]), sys.argv[2], sys.argv[3]
c = Cache(url, owner=owner)
q = WorkQueue(c)
time.sleep(max(0.0, start - time.time()))
got = []
while True:
    batch = q.take(3)
    if not batch:
        if len(q) == 0:
            break
        time.sleep(0.005)
        continue
    got += batch
    q.done(batch)
print(json.dumps(got))
"""


def test_daemons_sharing_a_queue_never_take_the_same_file(db_url: str) -> None:
    """Five processes drain one queue of 300 paths as fast as they can: every path is handed
    out exactly once."""
    with Cache(db_url) as c:
        q = WorkQueue(c)
        paths = [f"/m/{i:03d}.flac" for i in range(300)]
        for p in paths:
            q.put(p, "new")
    outs = children(CLAIMER, [[db_url, as_process(1000 + i)] for i in range(5)])
    taken = [p for out in outs for p in json.loads(out)]
    assert sorted(taken) == paths  # each once: none lost, none twice
    assert sum(1 for out in outs if json.loads(out)) >= 2  # they really shared the work


def test_front_doors_claim_what_they_found_and_daemons_take_only_below_their_roots(
        db_url: str) -> None:
    """A scan claims the files it found through the queue: new rows held by it, queued ones
    no other process holds; a daemon takes neither what the scan holds nor what lies outside
    its roots; the scan's own rows leave the queue at its end, a daemon's go back."""
    with Cache(db_url, owner=as_process(1, "here")) as c, \
            Cache(db_url, owner=as_process(2, "there")) as c2:
        daemon, scan = WorkQueue(c), WorkQueue(c2)
        for i in range(3):
            daemon.put(f"/m/{i}.flac", "new")
        assert daemon.take(1) == ["/m/0.flac"]
        wanted = [f"/m/{i}.flac" for i in range(5)] + ["/other/x.flac", "/m2/y.flac"]
        got = scan.claim(wanted, "scan")
        assert got == set(wanted) - {"/m/0.flac"}  # the daemon's batch stays the daemon's
        assert daemon.take(10, under=("/m",)) == ["/m/0.flac"]
        scan.release(drop="scan")  # ends: its rows leave, the daemon's queued rows go back
        assert sorted(daemon.paths()) == ["/m/0.flac", "/m/1.flac", "/m/2.flac"]
        scan.claim(["/m2/y.flac", "/other/x.flac"], "scan")
        scan.release()
        assert daemon.take(10, under=("/m",)) == ["/m/0.flac", "/m/1.flac", "/m/2.flac"]
        assert daemon.take(10, under=("/m2",)) == ["/m2/y.flac"]  # whole names: /m is not /m2
        lapsed = daemon.claim(["/m/0.flac", "/m/9.flac"], "scan")
        assert lapsed == {"/m/0.flac", "/m/9.flac"}  # its own claims, and a new row


CLAIM_SCAN = r"""
import json, sys, time
from tagger.cache import Cache
from tagger.cache.queue import Claims, WorkQueue
start, url = float(sys.argv[1]), sys.argv[2]
c = Cache(url)  # this process's own id: a made-up pid would read as a dead process's claims
paths = [f"/m/{i:03d}.flac" for i in range(120)]
time.sleep(max(0.0, start - time.time()))
got = []
with Claims(WorkQueue(c), "scan") as claims:
    for batch, _ in claims.rounds(paths):
        for p in batch:
            t0 = time.time()
            time.sleep(0.002)
            got.append([p, t0, time.time()])
            claims.done(p)
print(json.dumps(got))
"""


def test_scans_claiming_one_library_at_once_never_hold_the_same_file(db_url: str) -> None:
    """Four processes claim the same 120 paths together, each working through what it got
    and waiting for the rest: no path is held by two at once, and the queue is empty at the
    end. (Each then gets every path in turn: what another finished, a scan only re-checks.)"""
    outs = children(CLAIM_SCAN, [[db_url] for _ in range(4)])
    held: dict[str, list[tuple[float, float, int]]] = {}
    for who, out in enumerate(outs):
        for path, t0, t1 in json.loads(out):
            held.setdefault(path, []).append((t0, t1, who))
    assert len(held) == 120
    for path, spans in held.items():
        spans.sort()
        for (_, end, a), (start, _, b) in itertools.pairwise(spans):
            assert start >= end, (path, a, b)  # one holder at a time
    assert all(len(spans) == 4 for spans in held.values())  # each, in turn, by every one
    with Cache(db_url) as c:
        assert len(WorkQueue(c)) == 0


WRITER = r"""
import sys, time
from tagger.cache import Cache
from tagger.cache.queue import WorkQueue
from tagger.cache.store import StoredFeatures
start, url = float(sys.argv[1]), sys.argv[2]
c = Cache(url)
q = WorkQueue(c)
time.sleep(max(0.0, start - time.time()))
for i in range(60):
    c.upsert(f"/m/{i}.flac", status="done", size=i, analyses=1)
    c.put_features(f"pcm:{i}", "base@1", StoredFeatures(1, b"x", {}))
    q.put(f"/m/{i}.flac", "new")
"""


def test_processes_adding_the_same_rows_at_once_all_succeed(db_url: str) -> None:
    """Daemons on several machines record copies of one audio, or queue one path, together:
    "update, else insert" would fail the second (a unique violation on PostgreSQL)."""
    children(WRITER, [[db_url]] * 4)
    with Cache(db_url) as c:
        assert len(c.stat_index()) == 60 and c.count_features("base@1") == 60
        assert len(WorkQueue(c)) == 60


OPENER = r"""
import sys, time
from tagger.cache import Cache
start, url = float(sys.argv[1]), sys.argv[2]
time.sleep(max(0.0, start - time.time()))
with Cache(url) as c:
    print(c.schema_version)
"""


def test_many_processes_opening_a_new_database_at_once(db_url: str) -> None:
    """Several daemons started together on an empty database: one creates the schema, the
    others wait and find it there."""
    outs = children(OPENER, [[db_url]] * 4)
    assert [o.strip() for o in outs] == [str(SCHEMA_VERSION)] * 4


ROUNDS = r"""
import os, sys, time
from tagger.cache import Cache
start, folder, rounds = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for r in range(rounds):
    go = start + 0.4 * r
    while time.time() < go:  # spin: the processes open within microseconds of each other
        pass
    try:
        with Cache("sqlite:///" + os.path.join(folder, f"{r}.sqlite")):
            pass
    except Exception as e:
        print(r, e)
"""


def test_scans_started_together_on_a_new_sqlite_cache_all_open_it(tmp_path: Path) -> None:
    """Two scans started together on a new cache: one ended 2 with "cannot open the cache
    database: database is locked" (CI, and 5 rounds in 40 of three processes here): SQLite
    answers at once, without waiting, when two connections turn a new database to WAL. Four
    processes open 24 new databases in step; every open succeeds."""
    outs = children(ROUNDS, [[str(tmp_path), "24"]] * 4)
    assert [o for o in outs if o] == []
    assert len(list(tmp_path.glob("*.sqlite"))) == 24


def test_a_version_5_database_is_migrated(db_url: str) -> None:
    """The shape the previous release left (on PostgreSQL: 32-bit sizes and mtimes, 200
    characters of decision key), with data in it, opened by this one."""
    with Cache(db_url):
        pass
    is_pg = db_url.startswith("postgresql")
    statements = ["ALTER TABLE queue DROP COLUMN claimed_by", "ALTER TABLE queue DROP COLUMN claimed_at",
                  "ALTER TABLE intents DROP COLUMN owner",
                  "DROP TABLE daemons", "DROP TABLE learning",
                  "DROP INDEX ix_tracks_confidence", "DROP INDEX ix_tracks_updated_at",
                  "ALTER TABLE tracks DROP COLUMN confidence",
                  "ALTER TABLE tracks DROP COLUMN genres_seen",
                  "UPDATE meta SET value = '5' WHERE key = 'schema_version'",
                  "INSERT INTO tracks (path, status, size, mtime_ns, analyses, genre_scores) "
                  "VALUES ('/m/a.flac', 'done', 10, 20, 1, '{\"Rock\": 0.7, \"Jazz\": 0.2}')",
                  "INSERT INTO queue (path, reason, enqueued_at, not_before, attempts) "
                  "VALUES ('/m/b.flac', 'new', 1.0, 0.0, 0)"]
    if is_pg:
        statements += ["ALTER TABLE tracks ALTER COLUMN size TYPE INTEGER, ALTER COLUMN mtime_ns "
                       "TYPE INTEGER, ALTER COLUMN decision_key TYPE VARCHAR(200), ALTER COLUMN "
                       "model_version TYPE VARCHAR(80)",
                       "ALTER TABLE intents ALTER COLUMN decision_key TYPE VARCHAR(200)"]
    for s in statements:
        sql(db_url, s)
    with Cache(db_url) as c:
        assert c.schema_version == SCHEMA_VERSION
        assert c.get("/m/a.flac").analyses == 1  # type: ignore[union-attr]
        assert WorkQueue(c).take(5) == ["/m/b.flac"]  # queued before: claimable now
        c.upsert("/m/a.flac", mtime_ns=time.time_ns(), decision_key="k" * 500)
        assert c.get("/m/a.flac").decision_key == "k" * 500  # type: ignore[union-attr]
        assert Decisions(c).latest("musicnn") is None  # v7: learning's decisions
        row = c.get("/m/a.flac")
        assert row is not None and row.confidence == 0.7 and row.genres_seen is None  # v8
        names = {r[0] for r in c.engine.connect().execute(text(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'tracks'" if is_pg else
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tracks'"))}
        assert {"ix_tracks_confidence", "ix_tracks_updated_at"} <= names


def test_each_daemon_publishes_its_own_state(db_url: str) -> None:
    a, b = as_process(10, "far-away"), as_process(11, "far-away")
    with Cache(db_url, owner=a) as c, Cache(db_url, owner=b) as c2, Cache(db_url) as c3:
        one, two = DaemonState(c), DaemonState(c2)
        one.set(state="running", heartbeat=time.time(), processed=3)
        two.set(state="running", heartbeat=time.time() - 1000, processed=5)
        one.set(processed=4)  # merged into its own document, the other's untouched
        docs = DaemonState(c3).all()
        assert docs[a]["processed"] == 4 and docs[b]["processed"] == 5
        assert (docs[a]["host"], docs[a]["pid"]) == ("far-away", 10)
        now = time.time()
        # on another machine: alive while its heartbeat is fresh
        assert running(docs[a], now, 180) and not running(docs[b], now, 180)
        # here: its process must be there too (a pid reused after a kill -9 is not it)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        for pid, alive in ((os.getpid(), True), (dead.pid, False)):
            doc = {"id": as_process(pid), "state": "running", "heartbeat": now}
            assert running(doc, now, 180) is alive
        one.forget_before(now + 1)  # a new day: the old runs' documents go, not this one's
        assert list(DaemonState(c3).all()) == [a]


@pytest.mark.parametrize("kind", ["postgresql"])
def test_a_cache_that_cannot_be_opened_says_why(kind: str, postgres: object) -> None:
    from tagger.errors import CacheUnavailable

    url = postgres.url("no_such_database")  # type: ignore[attr-defined]
    with pytest.raises(CacheUnavailable, match="cannot open the cache database"):
        Cache(url)


LEARNER = """
import sys, time
from tagger.cache import Cache
from tagger.cache.learning import Decisions
start, url = float(sys.argv[1]), sys.argv[2]
with Cache(url) as c:
    time.sleep(max(0.0, start - time.time()))
    print("took" if Decisions(c).claim() is None else "busy")
"""


def test_learners_started_together_one_takes_the_lease(db_url: str) -> None:
    """``genre-tagger learn`` and daemons on one cache: exactly one learns at a time."""
    with Cache(db_url):
        pass
    outs = [o.strip() for o in children(LEARNER, [[db_url]] * 4)]
    assert sorted(outs) == ["busy", "busy", "busy", "took"], outs


def test_claims_on_a_sqlite_without_returning(tmp_path: Path) -> None:
    """SQLite before 3.35 (Debian 11, Ubuntu 20.04) has no ``UPDATE ... RETURNING``."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with Cache(url, owner=as_process(1, "a")) as c, Cache(url, owner=as_process(2, "b")) as c2:
        c.engine.dialect.update_returning = c2.engine.dialect.update_returning = False
        a, b = WorkQueue(c), WorkQueue(c2)
        for i in range(3):
            a.put(f"/m/{i}.flac", "new")
        assert a.take(2) == ["/m/0.flac", "/m/1.flac"]
        assert b.take(5) == ["/m/2.flac"]
        assert a.take(5) == ["/m/0.flac", "/m/1.flac"]


def test_another_process_write_in_flight_is_not_settled_by_this_one(db_url: str) -> None:
    """Two daemons share a cache: one settles only the write intents that are its own, or whose
    writer is known to have ended, or silent past the lease; never a write in flight elsewhere
    (settled early, its "genres before" would be lost to a kill a moment later)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    writers = {"alive-here": as_process(os.getpid()), "dead-here": as_process(dead.pid),
               "elsewhere": as_process(7, "another-host"), "stale": as_process(8, "another-host")}
    for name, owner in writers.items():
        with Cache(db_url, owner=owner) as c:
            c.begin_write(Intent(f"/m/{name}.flac", ["A"], ["A"], ["B"], "k"))
    sql(db_url, f"UPDATE intents SET created_at = created_at - {LEASE + 1} "
                "WHERE path = '/m/stale.flac'")
    with Cache(db_url) as me:
        me.begin_write(Intent("/m/mine.flac", [], [], ["C"], "k"))
        assert len(me.intents()) == 5
        assert sorted(i.path for i in me.abandoned_intents()) == [
            "/m/dead-here.flac", "/m/mine.flac", "/m/stale.flac"]
