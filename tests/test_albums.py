"""One genre set per album: ``scan --album`` (tags and folders) and the daemon's ``album = true``,
which waits for an album's files to arrive before deciding it."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg_encode, music_like
from mutagen.flac import FLAC
from test_cli import run_cli
from test_daemon import Daemon, _no_daemon_left_behind, wait_until  # noqa: F401 (autouse)

from tagger.analysis.taxonomy import Selection, album_scores, choose
from tagger.library.albums import album_key
from tagger.library.policy import IN_WORDS
from tagger.tags import read_genres

SEL = Selection(top_k=2, min_confidence=0.01)
RATE = 44_100


def signal(kind: str, seconds: float = 7.0) -> np.ndarray:
    """Sounds the shipped model hears differently (ambient chords, a techno kick, a square lead)."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(len(kind))
    if kind == "chords":
        return music_like(seconds)
    if kind == "kick":
        return (np.exp(-(t % 0.25) * 40) * np.sin(2 * np.pi * 50 * t)
                + 0.2 * rng.standard_normal(len(t)) * np.exp(-((t + 0.125) % 0.25) * 60))
    if kind == "square":
        return 0.3 * np.sign(np.sin(2 * np.pi * 110 * t)) * (np.sin(2 * np.pi * 2 * t) > 0)
    return 0.5 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))


def track(path: Path, kind: str, album: str | None = None, artist: str | None = None,
          seconds: float = 7.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg_encode(signal(kind, seconds), RATE, path, ["-c:a", "flac"])
    f = FLAC(path)
    if album:
        f["album"] = album
    if artist:
        f["albumartist"] = artist
    f.save()
    return path


def scores(db: Path) -> dict[str, tuple[dict[str, float], int]]:
    con = sqlite3.connect(db)
    try:
        return {p: (json.loads(s or "{}"), n) for p, s, n in
                con.execute("SELECT path, genre_scores, analyses FROM tracks")}
    finally:
        con.close()


def own(s: dict[str, float]) -> list[str]:
    return [g for g, _ in choose(s, SEL)]


def scan(root: Path, db: Path, *more: str) -> str:
    r = run_cli("scan", str(root), "--db", f"sqlite:///{db}", "--min-confidence", "0.01",
                "--top-k", "2", *more)
    assert r.returncode == 0, r.stderr
    return r.stderr


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    for kind in ("chords", "kick", "square"):  # no tags: the folder is the album
        track(root / "Untagged" / f"{kind}.flac", kind)
    # One album over two folders (album + album artist tags).
    track(root / "Box" / "CD1" / "a.flac", "sine", "Box", "Band")
    track(root / "Box" / "CD2" / "b.flac", "kick", "Box", "Band")
    # Two albums in one folder: an album tag without album artist counts within its folder.
    track(root / "Mixed" / "one.flac", "chords", "One")
    track(root / "Mixed" / "two.flac", "square", "Two")
    return root


def test_scan_album_gives_each_album_one_genre_set(library: Path, tmp_path: Path) -> None:
    db = tmp_path / "cache.sqlite"
    scan(library, db, "--album")
    found = scores(db)
    groups = {"untagged": sorted((library / "Untagged").glob("*.flac")),
              "box": [library / "Box" / "CD1" / "a.flac", library / "Box" / "CD2" / "b.flac"],
              "one": [library / "Mixed" / "one.flac"], "two": [library / "Mixed" / "two.flac"]}
    differs = 0
    for name, files in groups.items():
        expected = own(album_scores([found[str(f)][0] for f in files]))
        assert expected, name
        for f in files:
            assert read_genres(f) == expected, (name, f)
            differs += own(found[str(f)][0]) != expected
    assert differs >= 1  # not vacuous: some track alone would have been tagged otherwise

    # A track added to an album later: only it is analysed; its album is decided again.
    track(library / "Untagged" / "sine.flac", "sine", seconds=8.0)  # new audio
    err = scan(library, db, "--album")
    assert "1 analysed" in err and "7 unchanged" not in err, err
    found = scores(db)
    files = sorted((library / "Untagged").glob("*.flac"))
    expected = own(album_scores([found[str(f)][0] for f in files]))
    assert all(read_genres(f) == expected for f in files)
    # Never twice (copies of one audio, e.g. Box/CD2/b.flac of Untagged/kick.flac, not even once).
    assert all(n <= 1 for _, n in found.values()) and found[str(library / "Untagged" / "sine.flac")][1] == 1

    # Back to track by track: decided again from the cache, nothing analysed.
    err = scan(library, db, "--policy", "overwrite")
    assert "0 analysed" in err, err
    for path, (s, _) in scores(db).items():
        assert read_genres(path) == own(s)


def test_a_dry_run_shows_each_album_and_why_its_files_are_one(library: Path,
                                                             tmp_path: Path) -> None:
    """``scan --album --dry-run`` prints each album before its files, with why they are one
    (tags, or the folder); a folder holding two albums (differing album tags) shows as two.
    ``show`` says a file's genres were chosen for its album."""
    db = tmp_path / "cache.sqlite"
    r = run_cli("scan", str(library), "--db", f"sqlite:///{db}", "--min-confidence", "0.01",
                "--top-k", "2", "--album", "--dry-run")
    assert r.returncode == 0, r.stderr
    heads = [line for line in r.stdout.splitlines() if line.startswith("album ")]
    assert len(heads) == 4, r.stdout
    assert any("'box' by 'band' (album and album artist tags" in h for h in heads), heads
    mixed = [h for h in heads if f"in {library / 'Mixed'} (album tag without an album artist" in h]
    assert len(mixed) == 2, heads
    assert any(f"the folder {library / 'Untagged'} (no album tag)" in h for h in heads), heads
    files = [line for line in r.stdout.splitlines() if line.startswith("  ")]
    assert len(files) == 7 and all(" -> " in f for f in files), r.stdout
    scan(library, db, "--album")
    shown = run_cli("show", str(library / "Box" / "CD1" / "a.flac"), "--db", f"sqlite:///{db}")
    assert "(for its whole album, 'box' by 'band'" in shown.stdout, shown.stdout


def test_the_daemon_waits_for_the_rest_of_the_album(tmp_path: Path) -> None:
    root, db, log = tmp_path / "music", tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    (root / "Album").mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text("album = true\ntop_k = 2\n")
    src = tmp_path / "src"
    first = track(src / "1.flac", "chords")
    second = track(src / "2.flac", "kick")
    daemon = Daemon(root, db, log, "--config", str(config))
    paused, resume = threading.Event(), threading.Event()

    def slow_copy() -> None:  # the second track's copy stalls half-way, file still open
        data = second.read_bytes()
        with open(root / "Album" / "2.flac", "wb") as fh:
            fh.write(data[:len(data) // 2])
            fh.flush()
            paused.set()
            resume.wait(60)
            fh.write(data[len(data) // 2:])

    shutil.copy(first, root / "Album" / "1.flac")
    copier = threading.Thread(target=slow_copy)
    copier.start()
    try:
        assert paused.wait(30)
        one = str(root / "Album" / "1.flac")
        # The first track settles and is analysed, but its album is not complete: not tagged.
        assert wait_until(lambda: IN_WORDS["wait-album"] in log.read_text(), 120), log.read_text()
        assert one in scores(db) and read_genres(one) == []
        time.sleep(2)  # well past the settle time: still waiting
        assert read_genres(one) == []
    finally:
        resume.set()
        copier.join()
    two = str(root / "Album" / "2.flac")
    assert wait_until(lambda: read_genres(two) != [] and read_genres(one) != [], 120), log.read_text()
    found = scores(db)
    expected = own(album_scores([found[one][0], found[two][0]]))
    assert read_genres(one) == read_genres(two) == expected
    assert found[one][1] == found[two][1] == 1
    assert daemon.stop() == 0


def test_album_keys() -> None:
    assert album_key("/m/CD1/a.flac", "Box", "Band") == album_key("/m/CD2/b.flac", "box ", "BAND")
    # without an album artist, or with one that names no one, an album counts within a folder
    for artist in ("", "Various Artists", "VA"):
        assert album_key("/m/x/a.flac", "Greatest Hits", artist) != album_key(
            "/m/y/b.flac", "Greatest Hits", artist)
        assert album_key("/m/x/a.flac", "Greatest Hits", artist) == album_key(
            "/m/x/b.flac", "Greatest Hits", artist)
    assert album_key("/m/x/a.flac", "", "Band") == album_key("/m/x/b.flac", "", "")  # the folder


def test_the_daemon_decides_several_albums_in_one_folder_one_file_at_a_time(tmp_path: Path) -> None:
    """Singles side by side, taken one per batch: none may wait for the others (they are other
    albums), and our own tag writes settling in the folder hold nothing up."""
    root, db, log = tmp_path / "music", tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    (root / "Singles").mkdir(parents=True)
    config = tmp_path / "config.toml"
    config.write_text("album = true\ntop_k = 2\nbatch_files = 1\n")
    src = tmp_path / "src"
    made = [track(src / f"{kind}.flac", kind, album=f"Single {kind}")
            for kind in ("chords", "kick", "square")]
    daemon = Daemon(root, db, log, "--config", str(config))
    for f in made:
        shutil.copy(f, root / "Singles" / f.name)
    files = [root / "Singles" / f.name for f in made]
    assert wait_until(lambda: all(read_genres(f) for f in files), 120), log.read_text()
    found = scores(db)
    for f in files:
        assert read_genres(f) == own(found[str(f)][0])  # each its own album
    assert daemon.stop() == 0
