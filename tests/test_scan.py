"""``scan``, the cache and ``revert`` end to end, on real files and a real SQLite file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import scanning
from scanning import LOW_BAR as SEL
from tagfiles import make_tagged

from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Engine
from tagger.cache import Cache
from tagger.cache.schema import SCHEMA_VERSION
from tagger.errors import CacheUnavailable
from tagger.library.pipeline import Scanner, ScanOptions
from tagger.library.policy import decide
from tagger.library.tagging import revert
from tagger.tags import TagOptions, read_genres, write_genres

# A low bar so that synthetic test music always gets a genre.


@pytest.fixture
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "music"
    (lib / "Artist" / "Album").mkdir(parents=True)
    for name in ("flac", "mp3-v24", "ogg"):
        make_tagged(lib / "Artist" / "Album", name)
    make_tagged(lib / "Artist", "m4a", genre="Blues")  # a genre a person set
    (lib / "Artist" / "Album" / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (lib / ".hidden").mkdir()
    make_tagged(lib / ".hidden", "wav")
    return lib


def scanner(lib: Path, db: Path, engine: Engine, **kw: Any) -> Scanner:
    return scanning.scanner(lib, Cache(f"sqlite:///{db}"), engine, **kw)


def test_first_scan_tags_then_rescan_is_free(library: Path, tmp_path: Path, engine: Engine) -> None:
    db = tmp_path / "cache.sqlite"
    r = scanner(library, db, engine).run()
    assert r.counts["analysed"] == 4 and not r.failures
    assert r.counts["tagged"] == 3 and r.counts["left:has-genre"] == 1  # policy 'missing'
    for f in (library / "Artist" / "Album").iterdir():
        if f.suffix in (".flac", ".mp3", ".ogg"):
            assert read_genres(f), f
    assert read_genres(library / "Artist" / "m4a.m4a") == ["Blues"]
    assert not read_genres(library / ".hidden" / "wav.wav")  # hidden folders are skipped
    again = scanner(library, db, engine).run()
    assert again.counts["unchanged"] == 4 and again.counts["analysed"] == 0
    # The database is a real SQLite file in WAL mode, readable by anyone.
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT count(*) FROM tracks WHERE status='done'").fetchone()[0] == 4
    row = json.loads(con.execute("SELECT raw_scores FROM tracks LIMIT 1").fetchone()[0])
    assert len(row) == 100


def test_moves_renames_and_retags_are_not_reanalysed(library: Path, tmp_path: Path, engine: Engine) -> None:
    db = tmp_path / "cache.sqlite"
    scanner(library, db, engine).run()
    album = library / "Artist" / "Album"
    (album / "flac.flac").rename(library / "renamed.flac")
    # A person retags a file we tagged (their editor updates the mtime, as editors do).
    write_genres(album / "ogg.ogg", ["Jazz"], TagOptions(keep_mtime=False))
    r = scanner(library, db, engine).run()
    assert r.counts["analysed"] == 0
    assert r.counts["moved"] == 1 and r.counts["reused"] == 1
    assert r.counts["left:keep-user"] == 1 and read_genres(album / "ogg.ogg") == ["Jazz"]
    with Cache(f"sqlite:///{db}") as c:
        assert c.get(str(library / "renamed.flac")) is not None
        assert c.get(str(album / "flac.flac")) is None


def test_changed_audio_and_new_model_are_reanalysed(library: Path, tmp_path: Path, engine: Engine) -> None:
    db = tmp_path / "cache.sqlite"
    scanner(library, db, engine).run()
    album = library / "Artist" / "Album"
    make_tagged(album, "flac", seconds=6.0)  # new audio at the same path
    r = scanner(library, db, engine).run()
    assert r.counts["analysed"] == 1 and r.outcomes[0].path.endswith("flac.flac")
    r = scanner(library, db, engine, model="musicnn-msd").run()
    assert r.counts["analysed"] == 4


def test_dry_run_writes_nothing(library: Path, tmp_path: Path, engine: Engine) -> None:
    before = {p: p.read_bytes() for p in library.rglob("*") if p.is_file()}
    r = scanner(library, tmp_path / "c.sqlite", engine, dry_run=True).run()
    assert r.counts["tagged"] == 3
    assert {p: p.read_bytes() for p in library.rglob("*") if p.is_file()} == before
    assert all(o.new for o in r.outcomes if o.decision == "write")


def test_policies_merge_and_overwrite(library: Path, tmp_path: Path, engine: Engine) -> None:
    m4a = library / "Artist" / "m4a.m4a"
    scanner(library, tmp_path / "a.sqlite", engine, policy="merge").run()
    merged = read_genres(m4a)
    assert merged[0] == "Blues" and len(merged) > 1
    scanner(library, tmp_path / "a.sqlite", engine, policy="overwrite").run()
    assert "Blues" not in read_genres(m4a)


def test_revert_puts_back_and_respects_later_edits(library: Path, tmp_path: Path, engine: Engine) -> None:
    db = tmp_path / "cache.sqlite"
    scanner(library, db, engine, policy="merge").run()
    album = library / "Artist" / "Album"
    write_genres(album / "mp3-v24.mp3", ["Edited By Hand"], TagOptions(keep_mtime=False))
    with Cache(f"sqlite:///{db}") as c:
        outcomes = revert((str(library),), c, TagOptions())
    by_name = {Path(o.path).name: o for o in outcomes}
    assert by_name["m4a.m4a"].action == "reverted"
    assert read_genres(library / "Artist" / "m4a.m4a") == ["Blues"]
    assert by_name["flac.flac"].action == "reverted" and read_genres(album / "flac.flac") == []
    assert by_name["mp3-v24.mp3"].action == "skipped"
    assert read_genres(album / "mp3-v24.mp3") == ["Edited By Hand"]


def test_a_reverted_file_stays_reverted_until_asked(library: Path, tmp_path: Path,
                                                   engine: Engine) -> None:
    """revert is the person's choice: the next scan (any policy) leaves those files alone and
    says so; scan --retag-reverted tags them again."""
    db = tmp_path / "cache.sqlite"
    scanner(library, db, engine, policy="overwrite").run()
    flac = library / "Artist" / "Album" / "flac.flac"
    ours = read_genres(flac)
    with Cache(f"sqlite:///{db}") as c:
        assert {o.action for o in revert((str(library),), c, TagOptions())} == {"reverted"}
    again = scanner(library, db, engine, policy="overwrite").run()
    assert again.counts["tagged"] == 0 and again.counts["unchanged"] == 4
    assert read_genres(flac) == [] and read_genres(library / "Artist" / "m4a.m4a") == ["Blues"]
    write_genres(flac, [], TagOptions())  # the person touches it: still theirs
    edited = scanner(library, db, engine, policy="overwrite").run()
    assert edited.counts["left:reverted"] == 1 and read_genres(flac) == []
    asked = scanner(library, db, engine, policy="overwrite", retag_reverted=True).run()
    assert asked.counts["tagged"] == 4 and read_genres(flac) == ours
    with Cache(f"sqlite:///{db}") as c:  # and revert puts them back once more
        assert len(revert((str(library),), c, TagOptions())) == 4


def test_revert_takes_whole_folder_names_and_real_paths(tmp_path: Path, engine: Engine) -> None:
    """revert /x/music never touches /x/music2; a library scanned through a symlinked folder
    is reverted by its real path as well as by the link."""
    real = tmp_path / "disk" / "music"
    (real / "A").mkdir(parents=True)
    sibling = tmp_path / "disk" / "music2"
    sibling.mkdir()
    make_tagged(real / "A", "flac")
    make_tagged(sibling, "ogg")
    link = tmp_path / "music-link"
    link.symlink_to(real)
    db = tmp_path / "cache.sqlite"
    scanner(link, db, engine, policy="overwrite").run()
    Scanner(ScanOptions(roots=(str(sibling),), policy="overwrite"), engine.config,
            Cache(f"sqlite:///{db}"), engine).run()
    with Cache(f"sqlite:///{db}") as c:
        outcomes = revert((str(real),), c, TagOptions())
    assert [(Path(o.path).name, o.action) for o in outcomes] == [("flac.flac", "reverted")]
    assert read_genres(real / "A" / "flac.flac") == [] and read_genres(sibling / "ogg.ogg") != []


@pytest.mark.parametrize("fault", ["after-intent", "after-rename"])
def test_a_revert_killed_mid_write_is_settled_as_a_revert(library: Path, tmp_path: Path,
                                                          engine: Engine, fault: str) -> None:
    """revert writes with an intent, as a scan does: killed before or after its first rename,
    the next run settles that file from what it holds (never 'ours' again when the originals
    are back) and reverts the rest."""
    import signal

    db = tmp_path / "cache.sqlite"
    scanner(library, db, engine, policy="overwrite").run()
    cmd = [sys.executable, "-m", "tagger", "revert", "--db", f"sqlite:///{db}", str(library)]
    killed = subprocess.run(cmd, env={**os.environ, "GENRE_TAGGER_FAULT": fault},
                            capture_output=True, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert read_genres(library / "Artist" / "m4a.m4a") == ["Blues"]
    for name in ("flac.flac", "mp3-v24.mp3", "ogg.ogg"):
        assert read_genres(library / "Artist" / "Album" / name) == [], name
    with Cache(f"sqlite:///{db}") as c:
        assert not c.intents()
        assert all(r.genres_written is None for r in c.rows_under([str(library)]))
    assert scanner(library, db, engine, policy="overwrite").run().counts["tagged"] == 0


def test_interrupted_scan_resumes_without_redoing(library: Path, tmp_path: Path, engine: Engine) -> None:
    db = tmp_path / "cache.sqlite"
    stop = threading.Event()
    one_at_a_time = Engine(EngineConfig(device="cpu", selection=SEL, jobs=1, batch_size=1))
    s = scanner(library, db, one_at_a_time)
    first = s.run(stop, on_outcome=lambda o: stop.set())
    assert first.interrupted and 1 <= first.counts["analysed"] < 4
    second = scanner(library, db, engine).run()
    assert second.counts["analysed"] == 4 - first.counts["analysed"]
    assert second.counts["unchanged"] == first.counts["analysed"]


def test_symlink_outside_the_roots_is_never_written(tmp_path: Path, engine: Engine) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target = make_tagged(outside, "flac")
    data = target.read_bytes()
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "link.flac").symlink_to(target)
    (lib / "loop").symlink_to(lib)  # a symlink loop must not hang the walk
    r = scanner(lib, tmp_path / "c.sqlite", engine).run()
    assert r.failures["outside-roots"] == 1 and target.read_bytes() == data
    again = scanner(lib, tmp_path / "c.sqlite", engine).run()
    assert again.counts["unchanged"] == 1 and not again.failures  # said once, not on every scan


def test_bad_files_are_recorded_and_not_retried_until_changed(tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "empty.mp3").touch()
    (lib / "noise.flac").write_bytes(os.urandom(5000))
    make_tagged(lib, "flac")
    db = tmp_path / "c.sqlite"
    r = scanner(lib, db, engine).run()
    assert r.failures == {"empty": 1, "not-audio": 1} and r.counts["tagged"] == 1
    r2 = scanner(lib, db, engine, policy="overwrite").run()
    assert r2.counts["analysed"] == 0 and r2.counts["failed"] == 0
    assert r2.counts["unchanged"] == 2  # the failures, even under another policy
    (lib / "empty.mp3").write_bytes(b"still not audio")
    r3 = scanner(lib, db, engine).run()
    assert r3.failures == {"not-audio": 1}  # changed: retried


def test_schema_is_versioned_and_migrated(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    with Cache(f"sqlite:///{db}") as c:
        assert c.schema_version == SCHEMA_VERSION
        c.upsert("/x.flac", status="failed", error_code="not-audio")
    with Cache(f"sqlite:///{db}") as c:  # reopening migrates nothing and keeps the data
        assert c.get("/x.flac") is not None
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    with pytest.raises(CacheUnavailable) as e:
        Cache(f"sqlite:///{db}")
    assert str(e.value) == ("cannot open the cache database: the cache database is schema version 99, "
                            f"newer than this genre-tagger ({SCHEMA_VERSION}); upgrade genre-tagger")


def test_policy_table() -> None:
    assert decide([], ["Rock"], "missing").new == ["Rock"]
    assert decide(["Blues"], ["Rock"], "missing").why == "has-genre"
    assert decide(["Blues"], ["Rock"], "merge").new == ["Blues", "Rock"]
    assert decide(["Blues"], ["Rock"], "overwrite").new == ["Rock"]
    assert decide(["Rock"], ["Jazz"], "missing", written=["Rock"], before=[]).new == ["Jazz"]
    assert decide(["Blues", "Rock"], ["Jazz"], "merge", written=["Blues", "Rock"],
                  before=["Blues"]).new == ["Blues", "Jazz"]
    assert decide(["Hand"], ["Jazz"], "merge", written=["Rock"]).why == "keep-user"
    assert decide(["rock"], ["Rock"], "overwrite").why == "same"
    assert decide([], [], "overwrite").why == "abstain"


def test_scan_cli_end_to_end(library: Path, tmp_path: Path, db_url: str) -> None:
    """Every command that takes ``--db``, on SQLite and on a PostgreSQL server."""
    db = db_url
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    def cli(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tagger", *a], capture_output=True, text=True,
                              env=env, timeout=600)

    dry = cli("scan", "--db", db, "--dry-run", "--min-confidence", "0.01", str(library))
    assert dry.returncode == 0, dry.stderr
    assert "(none) -> " in dry.stdout and "dry run" in dry.stderr
    report = tmp_path / "r.json"
    out = cli("scan", "--db", db, "--min-confidence", "0.01", "--json", str(report), str(library))
    assert out.returncode == 0, out.stderr
    # The dry run's analyses were cached: the real run reuses them and decodes nothing.
    assert "0 analysed, 4 from the cache" in out.stderr and "3 tagged" in out.stderr
    assert json.loads(report.read_text())["counts"]["reused"] == 4
    f = library / "Artist" / "Album" / "flac.flac"
    shown = cli("show", "--db", db, str(f))
    assert shown.returncode == 0 and "status: done" in shown.stdout and "msd:" in shown.stdout
    stats = json.loads(cli("stats", "--db", db, "--json").stdout)
    assert stats["tagged"] == 3 and stats["by_status"]["done"] == 4
    rev = cli("revert", "--db", db, str(library))
    assert rev.returncode == 0 and "reverted 3 files" in rev.stderr
    assert read_genres(f) == []
    shutil.rmtree(library)


def test_ctrl_c_stops_cleanly_and_the_same_scan_resumes(tmp_path: Path) -> None:
    """A real SIGINT to a real ``genre-tagger scan`` process."""
    import signal
    import time

    lib = tmp_path / "lib"
    lib.mkdir()
    for i in range(8):
        make_tagged(lib, "flac", seconds=4.0 + i).rename(lib / f"t{i}.flac")
    db = tmp_path / "c.sqlite"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    args = [sys.executable, "-m", "tagger", "scan", "--db", f"sqlite:///{db}", "--jobs", "1",
            "--batch-size", "1", "--min-confidence", "0.01", str(lib)]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and done == 0:
        time.sleep(0.2)
        if db.exists():
            with contextlib.suppress(sqlite3.OperationalError):  # the schema is being created
                done = sqlite3.connect(db).execute(
                    "SELECT count(*) FROM tracks WHERE genres_written IS NOT NULL").fetchone()[0]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    finished = sqlite3.connect(db).execute("SELECT count(*) FROM tracks WHERE status='done'").fetchone()[0]
    assert 1 <= finished < 8
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{8 - finished} analysed" in again.stderr


def test_copies_of_the_same_audio_are_analysed_once(tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "lib"
    (lib / "album").mkdir(parents=True)
    (lib / "compilation").mkdir()
    src = make_tagged(lib / "album", "flac")
    shutil.copy2(src, lib / "compilation" / "same-track.flac")
    write_genres(lib / "compilation" / "same-track.flac", [])  # other tags, same audio
    r = scanner(lib, tmp_path / "c.sqlite", engine).run()
    assert r.counts["analysed"] == 1 and r.counts["reused"] == 1 and r.counts["tagged"] == 2
