"""The daemon for real: a real watchdog observer, a real daemon subprocess, temporary folders."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemons import (
    REPO,
    Daemon,
    copy_slowly,
    no_daemon_left_behind,
    pg_query,
    query,
    tagged,
    wait_until,
    wav_bytes,
)

from tagger.errors import ConfigError
from tagger.formats.identity import audio_identity
from tagger.settings import load_settings
from tagger.tags import read_genres


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    yield from no_daemon_left_behind()


@pytest.fixture
def lib(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    root = tmp_path / "music"
    root.mkdir()
    yield root, tmp_path / "cache.sqlite", tmp_path / "daemon.log"


def test_200_files_copied_slowly_are_each_analysed_once_after_their_copy(lib) -> None:  # type: ignore[no-untyped-def]
    root, db, log = lib
    d = Daemon(root, db, log)
    datas = {}

    def copier() -> None:
        for i in range(200):
            album = root / f"album{i // 20:02d}"
            album.mkdir(exist_ok=True)
            datas[album / f"track{i:03d}.wav"] = wav_bytes(i)
            copy_slowly(datas[album / f"track{i:03d}.wav"], album / f"track{i:03d}.wav", pause=0.01)

    t = threading.Thread(target=copier)
    t.start()
    t.join()
    assert wait_until(lambda: len(tagged(db)) == 200, 400), (len(tagged(db)), log.read_text()[-3000:])
    time.sleep(3)  # any re-queue caused by our own writes would show up now
    assert d.stop() == 0
    counts = tagged(db)
    assert set(counts.values()) == {1}  # each analysed exactly once; own writes never re-queued
    rows = dict(query(db, "SELECT path, audio_id FROM tracks"))
    for path in datas:
        assert read_genres(path)
        assert rows[str(path)] == audio_identity(path)  # analysed the finished file, not a part


def test_kill_9_loses_nothing_and_restarts_without_double_work(lib) -> None:  # type: ignore[no-untyped-def]
    root, db, log = lib
    for i in range(24):
        (root / f"t{i:02d}.wav").write_bytes(wav_bytes(1000 + i))
    d = Daemon(root, db, log, "--log-level", "info")  # start-up reconciliation queues all 24
    assert wait_until(lambda: len(tagged(db)) >= 3, 120)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    left = query(db, "SELECT count(*) FROM queue")[0][0]
    assert left > 0  # killed with work queued
    d2 = Daemon(root, db, log)
    assert wait_until(lambda: len(tagged(db)) == 24, 240), log.read_text()[-2000:]
    status = subprocess.run([sys.executable, "-m", "tagger", "status", "--db", f"sqlite:///{db}",
                             "--json"], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    info = json.loads(status.stdout)
    # "processed today" is kept in the database: the killed daemon's files still count.
    assert info["processed_today"] >= 24 - 8 and info["processed"] < info["processed_today"], info
    assert d2.stop() == 0
    assert set(tagged(db).values()) == {1}
    assert query(db, "SELECT count(*) FROM queue")[0][0] == 0


def test_moves_and_renames_are_followed_without_reanalysis(lib) -> None:  # type: ignore[no-untyped-def]
    root, db, log = lib
    (root / "a").mkdir()
    for i in range(4):
        (root / "a" / f"t{i}.wav").write_bytes(wav_bytes(2000 + i))
    d = Daemon(root, db, log)
    assert wait_until(lambda: len(tagged(db)) == 4, 120)
    (root / "b").mkdir()
    (root / "a" / "t0.wav").rename(root / "a" / "renamed.wav")
    (root / "a" / "t1.wav").rename(root / "b" / "t1.wav")
    (root / "a").rename(root / "c")  # a whole folder moves
    expect = {root / "c" / "renamed.wav", root / "b" / "t1.wav", root / "c" / "t2.wav",
              root / "c" / "t3.wav"}
    assert wait_until(lambda: set(map(Path, tagged(db))) >= expect, 60), (tagged(db), log.read_text())
    time.sleep(2)
    assert d.stop() == 0
    counts = {Path(p): n for p, n in tagged(db).items() if Path(p).exists()}
    assert set(counts) == expect and set(counts.values()) == {1}


def test_sigterm_exits_cleanly_within_the_bound_with_the_queue_intact(lib) -> None:  # type: ignore[no-untyped-def]
    root, db, log = lib
    for i in range(40):
        (root / f"t{i:02d}.wav").write_bytes(wav_bytes(3000 + i, seconds=6))
    d = Daemon(root, db, log)
    every = {str(root / f"t{i:02d}.wav") for i in range(40)}

    def accounted() -> set[str]:
        return {p for (p,) in query(db, "SELECT path FROM queue")} | set(tagged(db))

    # The precondition: all 40 queued (the last ones written may sit in the settler for
    # settle_seconds first) and work under way.
    assert wait_until(lambda: len(tagged(db)) >= 1 and accounted() == every, 120)
    start = time.monotonic()
    assert d.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < 60  # documented bound: one batch
    queued = {p for (p,) in query(db, "SELECT path FROM queue")}
    done = set(tagged(db))
    assert queued and done and queued | done == every
    assert "stopped;" in log.read_text()


def test_bad_files_are_recorded_and_the_daemon_keeps_running(lib) -> None:  # type: ignore[no-untyped-def]
    root, db, log = lib
    d = Daemon(root, db, log, caps_dropped=True)
    (root / "empty.flac").touch()
    (root / "random.mp3").write_bytes(os.urandom(20_000))
    (root / "corrupt.wav").write_bytes(wav_bytes(1)[:60] + os.urandom(5000))
    (root / "tiny.wav").write_bytes(wav_bytes(2, seconds=0.2))
    locked = root / "locked.wav"
    locked.write_bytes(wav_bytes(3))
    locked.chmod(0)
    (root / "good.wav").write_bytes(wav_bytes(4))
    want = {"empty.flac", "random.mp3", "corrupt.wav", "tiny.wav", "locked.wav"}

    def failures() -> dict[str, str]:
        rows = query(db, "SELECT path, error_code FROM tracks WHERE status='failed'")
        return {Path(p).name: c for p, c in rows}

    settled = wait_until(lambda: set(failures()) >= want and len(tagged(db)) == 1, 120)
    assert settled, (failures(), log.read_text())
    assert d.proc.poll() is None  # still running
    f = failures()
    assert f["empty.flac"] == "empty" and f["random.mp3"] == "not-audio"
    assert f["tiny.wav"] == "too-short" and f["locked.wav"] == "permission"
    status = subprocess.run([sys.executable, "-m", "tagger", "status", "--db", f"sqlite:///{db}"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "daemon: running" in status.stdout and "locked.wav" in status.stdout
    assert d.stop() == 0
    locked.chmod(0o644)


def test_config_file_env_and_flags(tmp_path: Path) -> None:
    music = tmp_path / "music"
    music.mkdir()
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{music}"]\npolicy = "merge"\nsettle_seconds = 5\n')
    c = load_settings(cfg, env={"GENRE_TAGGER_SETTLE_SECONDS": "1.5"}, overrides={"policy": "overwrite"},
                      require_roots=True)
    assert c.roots == (str(music),) and c.settle_seconds == 1.5 and c.policy == "overwrite"
    cfg.write_text(f'roots = ["{music}"]\nsettel_seconds = 5\n')
    with pytest.raises(ConfigError, match="unknown key 'settel_seconds'"):
        load_settings(cfg, env={})
    cfg.write_text(f'roots = ["{music}"]\npolicy = "sometimes"\n')
    with pytest.raises(ConfigError, match="'policy' must be one of"):
        load_settings(cfg, env={})
    cfg.write_text(f'roots = ["{music}"]\ntop_k = "three"\n')
    with pytest.raises(ConfigError, match="'top_k' must be a whole number, not 'three'"):
        load_settings(cfg, env={})
    out = subprocess.run([sys.executable, "-m", "tagger", "watch", "--config", str(cfg)],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 2 and "top_k" in out.stderr and "Traceback" not in out.stderr


def test_schema_v1_database_is_migrated(tmp_path: Path) -> None:
    from tagger.cache import Cache

    db = tmp_path / "old.sqlite"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE meta (key VARCHAR(40) PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE tracks (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER,
            mtime_ns INTEGER, audio_id VARCHAR(80), model_version VARCHAR(80), raw_scores TEXT,
            genre_scores TEXT, genres_chosen TEXT, genres_before TEXT, genres_written TEXT,
            decision_key VARCHAR(200), status VARCHAR(16) NOT NULL, error_code VARCHAR(40),
            error_reason TEXT, created_at FLOAT, analysed_at FLOAT, written_at FLOAT, updated_at FLOAT);
        INSERT INTO tracks (path, status, analysed_at) VALUES ('/m/a.flac', 'done', 1.0);
    """)
    con.commit()
    con.close()
    with Cache(f"sqlite:///{db}") as c:
        # v1 -> v2 (queue, daemon, analyses) -> v3 (write intents) -> v4 (stored features)
        # -> v5 (album keys, window timelines) -> v6 (queue claims, one state per daemon)
        # -> v7 (learning's decisions) -> v8 (the page's confidence and indexes)
        assert c.schema_version == 8
        assert c.count_features("any") == 0
        row = c.get("/m/a.flac")
        assert row is not None and row.analyses == 1 and row.album_key is None  # kept, not dropped
        assert c.intents() == []
        c.upsert("/m/a.flac", album_key="folder:/m")
        assert c.album_members(["folder:/m"]) == {"folder:/m": ["/m/a.flac"]}
        # features stored before timelines existed get one from the next analysis of the audio
        from tagger.cache.store import StoredFeatures

        c.put_features("pcm:1", "base", StoredFeatures(3, b"x", {"t": 0.5}))
        assert c.features(["pcm:1"], "base")["pcm:1"].timeline is None
        c.put_features("pcm:1", "base", StoredFeatures(3, b"y", {"t": 0.5}, b"timeline"))
        got = c.features(["pcm:1"], "base")["pcm:1"]
        assert got.data == b"x" and got.timeline == b"timeline"  # the first features kept


def test_files_analysed_but_not_yet_tagged_are_finished_after_a_restart(lib) -> None:  # type: ignore[no-untyped-def]
    """The state a kill -9 between analysis and tag write leaves: the restart must finish it."""
    from tagger.analysis.config import EngineConfig
    from tagger.analysis.taxonomy import Selection
    from tagger.cache import Cache
    from tagger.library.pipeline import Scanner, ScanOptions

    root, db, log = lib
    for i in range(3):
        (root / f"t{i}.wav").write_bytes(wav_bytes(4000 + i))
    with Cache(f"sqlite:///{db}") as cache:  # analyse and record, write nothing: a dry run
        cfg = EngineConfig(device="cpu", selection=Selection(min_confidence=0.01))
        Scanner(ScanOptions((str(root),), dry_run=True), cfg, cache).run()
    assert not tagged(db) and query(db, "SELECT sum(analyses) FROM tracks")[0][0] == 3
    d = Daemon(root, db, log)
    assert wait_until(lambda: len(tagged(db)) == 3, 120), log.read_text()
    assert d.stop() == 0
    assert set(tagged(db).values()) == {1}  # finished from the cache, not analysed again


def test_daemons_sharing_a_postgresql_queue_analyse_each_file_once(lib, postgres) -> None:  # type: ignore[no-untyped-def]
    """Two daemons, one PostgreSQL cache and queue, the same folder: each file analysed and
    tagged once, the work shared; ``status`` shows both; one killed with files claimed, a third
    started on this machine takes them over at once, and still nothing is analysed twice."""
    root, db, log = lib
    url = postgres.database()
    for i in range(20):
        (root / f"t{i:02d}.wav").write_bytes(wav_bytes(3000 + i))
    settings = {"GENRE_TAGGER_BATCH_FILES": "2", "GENRE_TAGGER_STATUS_SECONDS": "1"}

    def done() -> dict[str, int]:
        return dict(pg_query(url, "SELECT path, analyses FROM tracks WHERE genres_written IS NOT NULL"))

    a = Daemon(root, db, log, url=url, env=settings)
    b = Daemon(root, db, log.with_name("b.log"), url=url, env=settings)
    assert wait_until(lambda: len(done()) >= 6, 180), log.read_text()[-2000:]
    status = subprocess.run([sys.executable, "-m", "tagger", "status", "--db", url, "--json"],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    info = json.loads(status.stdout)
    assert info["state"] == "running" and {d["pid"] for d in info["daemons"]} == {a.proc.pid, b.proc.pid}
    # a killed with files claimed: they must not wait for the lease (15 minutes)
    holds_claims = f"SELECT count(*) FROM queue WHERE claimed_by LIKE '%:{a.proc.pid}:%'"
    assert wait_until(lambda: pg_query(url, holds_claims)[0][0] > 0, 60)
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    c = Daemon(root, db, log.with_name("c.log"), url=url, env=settings)
    assert wait_until(lambda: len(done()) == 20, 240), log.with_name("c.log").read_text()[-2000:]
    assert set(done().values()) == {1}  # none analysed twice
    assert pg_query(url, "SELECT count(*) FROM queue") == [(0,)]
    per_daemon = {json.loads(s)["pid"]: json.loads(s).get("processed", 0)
                  for (s,) in pg_query(url, "SELECT state FROM daemons")}
    assert sum(1 for n in per_daemon.values() if n) >= 2, per_daemon  # the work was shared
    assert b.stop() == 0 and c.stop() == 0


def test_a_revert_while_the_daemon_runs_is_not_undone(lib) -> None:  # type: ignore[no-untyped-def]
    """revert beside a running daemon: its writes come back as events, and the daemon must
    leave the files as the person put them (30 s watched); scan --retag-reverted is how they
    ask for genres again."""
    from tagger.tags import read_genres

    root, db, log = lib
    files = [root / f"r{i}.wav" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(wav_bytes(3000 + i))
    d = Daemon(root, db, log)
    assert wait_until(lambda: len(tagged(db)) == 3, 120), log.read_text()
    cli = [sys.executable, "-m", "tagger"]
    env = dict(os.environ, PYTHONPATH=str(REPO), GENRE_TAGGER_MIN_CONFIDENCE="0.01",
               XDG_CONFIG_HOME=str(db.parent / "no-config"))
    out = subprocess.run([*cli, "revert", "--db", f"sqlite:///{db}", str(root)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "reverted 3 files" in out.stderr, out.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert all(read_genres(f) == [] for f in files), log.read_text()
        time.sleep(1)
    assert not tagged(db)
    assert d.stop() == 0
    out = subprocess.run([*cli, "scan", "--retag-reverted", "--db", f"sqlite:///{db}",
                          "--device", "cpu", str(root)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert all(read_genres(f) != [] for f in files)
