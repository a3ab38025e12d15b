"""``status``, ``stats`` and ``show`` tell what is true now: ``status`` never creates a cache
database (none, or a damaged one, is said in plain words); ``stats`` and ``show`` read what the
files carry, not only what the cache remembers writing. Real files, real SQLite, the real CLI."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tagfiles import make_tagged

from tagger.cache import Cache
from tagger.tags import read_genres, write_genres


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True, text=True,
                          env=full, timeout=600)


def scanned(tmp_path: Path, own: dict[str, str] | None = None) -> tuple[Path, str]:
    """A library of six untagged real files in two folders (plus ``own``: name -> the genre a
    file of that format carries already), scanned with the default policy into a new cache."""
    lib = tmp_path / "music"
    for folder in ("a", "b"):
        (lib / folder).mkdir(parents=True)
        for name in ("flac", "mp3-v24", "ogg"):
            make_tagged(lib / folder, name)
    if own:
        (lib / "own").mkdir()
        for name, genre in own.items():
            make_tagged(lib / "own", name, genre=genre)
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    r = run_cli("scan", "--db", db, "--min-confidence", "0.01", str(lib))
    assert r.returncode == 0, r.stderr
    return lib, db


def written_by_us(db: str) -> dict[str, list[str]]:
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    try:
        rows = con.execute("SELECT path, genres_written FROM tracks WHERE genres_written IS NOT NULL")
        return {p: json.loads(w) for p, w in rows}
    finally:
        con.close()


# --- status never creates a database ----------------------------------------------------------


def test_status_with_the_cache_deleted_creates_nothing_and_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = state / "cache.sqlite"
    url = f"sqlite:///{db}"
    with Cache(url) as cache:  # genre-tagger ran once...
        cache.upsert("/music/a.flac", status="done")
    for p in state.iterdir():  # ...then the database was deleted
        p.unlink()

    r = run_cli("status", "--db", url)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert (f"Error: there is no cache database at {db}: genre-tagger has not run with this "
            "configuration, or the database was deleted") in r.stderr
    assert "never ran" not in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert list(state.iterdir()) == []  # no new empty database, no -wal or -shm

    as_json = run_cli("status", "--json", "--db", url)
    assert as_json.returncode == 2
    info = json.loads(as_json.stdout)
    assert info["cache"] == "missing" and info["database"] == str(db) and info["state"] == "unknown"
    assert list(state.iterdir()) == []

    # Never ran, at the default location: neither the database nor its folders are made.
    xdg = tmp_path / "xdg-state"
    env = {"XDG_STATE_HOME": str(xdg), "XDG_CONFIG_HOME": str(tmp_path / "no-config")}
    r = run_cli("status", env=env)
    assert r.returncode == 2 and "there is no cache database at " in r.stderr, r.stderr
    assert str(xdg / "genre-tagger" / "cache.sqlite") in r.stderr
    assert not xdg.exists()


def test_status_with_the_cache_overwritten_says_it_is_damaged(tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    url = f"sqlite:///{db}"
    with Cache(url) as cache:
        for i in range(300):
            cache.upsert(f"/music/{i:04d}-{'x' * 80}.flac", status="done",
                         genres_written=["Rock", "Jazz"], genres_chosen=["Rock", "Jazz"])
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = con.execute("PRAGMA page_size").fetchone()[0]
    last_root = con.execute("SELECT max(rootpage) FROM sqlite_master").fetchone()[0]
    con.close()
    good = db.read_bytes()
    rng = random.Random(22)

    # Random bytes over the whole file: "file is not a database".
    db.write_bytes(rng.randbytes(len(good)))
    before = db.read_bytes()
    r = run_cli("status", "--db", url)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"Error: the cache database at {db} is damaged (file is not a database)" in r.stderr
    assert "Move it aside" in r.stderr
    assert db.read_bytes() == before  # looked at, not replaced
    info = json.loads(run_cli("status", "--json", "--db", url).stdout)
    assert info["cache"] == "damaged" and info["database"] == str(db)

    # Damage past the schema's pages: it opens, then a read finds "malformed".
    tail = rng.randbytes(len(good) - last_root * page)
    db.write_bytes(good[:last_root * page] + tail)
    r = run_cli("status", "--db", url)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"Error: the cache database at {db} is damaged (database disk image is malformed)" in r.stderr


# --- stats and show read the files ------------------------------------------------------------


def test_stats_counts_only_files_that_still_carry_our_genres(tmp_path: Path) -> None:
    lib, db = scanned(tmp_path, own={"flac": "Blues"})
    ours = written_by_us(db)
    assert len(ours) == 6 and str(lib / "own" / "flac.flac") not in ours  # default policy: missing
    assert all(read_genres(p) == g for p, g in ours.items())

    # A person replaces two files' genres (one with nothing) and deletes a third.
    write_genres(lib / "a" / "flac.flac", ["Polka"])
    write_genres(lib / "b" / "ogg.ogg", [])
    (lib / "a" / "mp3-v24.mp3").unlink()
    still = {p: g for p, g in ours.items() if os.path.exists(p) and read_genres(p) == g}
    assert len(still) == 3

    r = run_cli("stats", "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["tagged"], s.get("changed_since"), s.get("missing"), s.get("written")) == (3, 2, 1, 6), s
    assert s["unreadable"] == {}
    assert s["genres"] == dict(Counter(g for gs in still.values() for g in gs))

    text = run_cli("stats", "--db", db)
    assert text.returncode == 0, text.stderr
    assert "7 files known: 7 done" in text.stdout
    assert "3 carry genres written by genre-tagger\n" in text.stdout
    assert ("2 carry other genres now: a person (or another program) changed them after "
            "genre-tagger wrote them") in text.stdout
    assert "1 tagged by genre-tagger are gone (no such file)" in text.stdout


def test_show_says_what_the_file_carries_and_whose_it_is(tmp_path: Path) -> None:
    lib, db = scanned(tmp_path, own={"flac": "Blues"})
    own = lib / "own" / "flac.flac"
    r = run_cli("show", "--db", db, str(own))
    assert r.returncode == 0, r.stderr
    assert "  genres now: Blues\n" in r.stdout
    assert ("  written: (never): genre-tagger has not written this file's genres; its genres are "
            "its own\n") in r.stdout
    assert "before us" not in r.stdout
    shown = json.loads(run_cli("show", "--json", "--db", db, str(own)).stdout)[0]
    assert shown["genres_now"] == ["Blues"] and shown["genres_written"] is None

    ours = lib / "a" / "flac.flac"
    written = read_genres(ours)
    assert written
    r = run_cli("show", "--db", db, str(ours))
    assert (f"  genres now: {'; '.join(written)}\n  written by genre-tagger: {'; '.join(written)} "
            "(the file still carries them); before us: (none)\n") in r.stdout
    write_genres(ours, ["Polka"])
    r = run_cli("show", "--db", db, str(ours))
    assert (f"  genres now: Polka\n  written by genre-tagger: {'; '.join(written)} (changed since: "
            "a person or another program replaced them); before us: (none)\n") in r.stdout
    shown = json.loads(run_cli("show", "--json", "--db", db, str(ours)).stdout)[0]
    assert shown["genres_now"] == ["Polka"] and shown["genres_written"] == written


# --- files left alone are visible --------------------------------------------------------------


def test_scan_lists_what_it_changed_and_show_says_why_a_file_was_left_alone(
        tmp_path: Path) -> None:
    """A scan prints each file it tagged (old -> new, as beets does) and counts the others by
    reason; ``show FOLDER`` covers its audio files and says, in words, why a file that keeps
    its own genre was left alone (it said 'written: (never); before us: (none)')."""
    lib = tmp_path / "music"
    lib.mkdir()
    for name in ("flac", "ogg"):
        make_tagged(lib, name)
    own = make_tagged(lib, "mp3-v24", genre="Romantic Classical")
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    r = run_cli("scan", "--db", db, "--min-confidence", "0.01", str(lib))
    assert r.returncode == 0, r.stderr
    changed = sorted(line.split(": ", 1)[0] for line in r.stdout.splitlines())
    assert changed == sorted(str(lib / n) for n in ("flac.flac", "ogg.ogg")), r.stdout
    assert all(" (none) -> " in line for line in r.stdout.splitlines()), r.stdout
    assert "1 left as they were (has-genre 1)" in r.stderr, r.stderr
    shown = run_cli("show", str(lib), "--db", db)
    assert shown.returncode == 0, shown.stderr
    blocks = {b.splitlines()[0]: b for b in ("\n" + shown.stdout).split(f"\n{lib}")[1:]}
    assert len(blocks) == 3, shown.stdout
    mine = next(b for k, b in blocks.items() if k.endswith("mp3-v24.mp3"))
    assert "genres now: Romantic Classical" in mine
    assert "decision: left alone: it has genres of its own" in mine, mine
    tagged = next(b for k, b in blocks.items() if k.endswith("flac.flac"))
    assert "decision: genre-tagger wrote its genres" in tagged, tagged
    assert read_genres(own) == ["Romantic Classical"]
    numbers = json.loads(run_cli("stats", "--json", "--db", db).stdout)
    carried, chosen = sum(numbers["genres"].values()), sum(numbers["chosen"].values())
    assert chosen > carried > 0  # the file left alone counts where its genres were chosen
    text = run_cli("stats", "--db", db).stdout
    assert "by genre, files carrying it from genre-tagger: " in text, text
    assert "by genre, chosen for every analysed file (those left alone too" in text, text


def test_stats_on_an_empty_cache_says_there_is_nothing_yet(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    Cache(db).close()
    r = run_cli("stats", "--db", db)
    assert r.returncode == 0 and "no files known yet" in r.stdout, (r.stdout, r.stderr)


def test_formats_it_cannot_tag_are_named_not_failed(tmp_path: Path) -> None:
    """WavPack, AC-3 and TrueAudio (ffmpeg decodes them; genre-tagger cannot write their tags):
    each is analysed and named as 'not supported: FORMAT', the scan ends 0, and the files
    are byte for byte as they were. It skipped them without a word before (TAK, DSD, ...) or
    failed them (exit 1)."""
    lib = tmp_path / "music"
    lib.mkdir()
    flac = make_tagged(lib, "flac")
    made = {}
    for ext, args in (("wv", ["-c:a", "wavpack"]), ("ac3", ["-c:a", "ac3"]), ("tta", ["-c:a", "tta"])):
        out = lib / f"t.{ext}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(flac), "-map", "0:a", *args,
                        str(out)], check=True)
        made[out] = out.read_bytes()
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    r = run_cli("scan", "--db", db, "--min-confidence", "0.01", str(lib))
    assert r.returncode == 0, r.stderr
    for name in ("WavPack", "AC-3", "TrueAudio"):
        assert f"not supported: {name} (genre-tagger cannot write its tags yet)" in r.stderr, r.stderr
    assert "3 not supported (their format)" in r.stderr and "failed: none" in r.stderr, r.stderr
    assert "4 analysed" in r.stderr, r.stderr
    assert all(p.read_bytes() == data for p, data in made.items())
    assert read_genres(flac)
