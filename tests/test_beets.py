"""The beets plugin in a real beets library, driven through beets' own command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from beetsenv import configure, runner
from tagfiles import make_tagged

from tagger.tags import TagOptions, read_genres, write_genres

pytest.importorskip("beets")


@pytest.fixture
def beets(tmp_path: Path):  # type: ignore[no-untyped-def]
    src = tmp_path / "incoming" / "Album"
    src.mkdir(parents=True)
    for name in ("flac", "mp3-v24", "ogg"):
        make_tagged(src, name, seconds=8.0)
    cfg = configure(tmp_path, {}, {"cache_db": f"sqlite:///{tmp_path / 'cache.sqlite'}",
                                   "min_confidence": 0.01, "device": "cpu"})
    beet = runner(cfg, timeout=600)

    def rows() -> list[list[str]]:
        out = beet("ls", "-f", "$path|$genres|$genre_source|$genre_confidence").stdout
        return [line.split("|") for line in sorted(out.splitlines())]

    return {"beet": beet, "rows": rows, "src": src, "lib": tmp_path / "library",
            "cache": tmp_path / "cache.sqlite", "tmp": tmp_path}


def test_import_predicts_the_album_in_one_batch_and_writes_files(beets) -> None:  # type: ignore[no-untyped-def]
    out = beets["beet"]("-v", "import", str(beets["src"]))
    assert "genrepredict: 3 analysed, 0 from the genre-tagger cache, 0 failed" in out.stderr
    rows = beets["rows"]()
    assert len(rows) == 3
    genres = {r[1] for r in rows}
    assert len(genres) == 1 and genres != {""}  # one genre set for the album
    assert all(r[2] == "genrepredict" and float(r[3]) > 0 for r in rows)
    for path, g, *_ in rows:
        assert "; ".join(read_genres(path)) == g  # files and beets agree
    typed = beets["beet"]("ls", "genre_confidence:0.01..").stdout.splitlines()
    assert len(typed) == 3 and beets["beet"]("ls", "genre_confidence:0.999..").stdout == ""


def test_person_set_genres_pretend_force_and_merge(beets) -> None:  # type: ignore[no-untyped-def]
    beet, rows = beets["beet"], beets["rows"]
    beet("import", str(beets["src"]))
    flac = next(r[0] for r in rows() if r[0].endswith(".flac"))
    beet("modify", "-y", f"path:{flac}", "genres=Blues")
    ours = next(r[1] for r in rows() if r[0].endswith(".mp3"))

    beet("genre-predict")  # not forced: the person's genre stays
    assert next(r[1] for r in rows() if r[0] == flac) == "Blues"

    before = rows()
    shown = beet("genre-predict", "-p", "-f").stdout
    assert "Blues" in shown and rows() == before and read_genres(flac) == ["Blues"]

    beet("genre-predict", "-f", "-k")  # keep theirs, add ours after
    merged = next(r[1] for r in rows() if r[0] == flac).split("; ")
    assert merged[0] == "Blues" and len(merged) > 1 and read_genres(flac) == merged

    beet("modify", "-y", f"path:{flac}", "genres=Blues")
    beet("genre-predict", "-f")
    assert next(r[1] for r in rows() if r[0] == flac) != "Blues"
    assert next(r[1] for r in rows() if r[0].endswith(".mp3")) == ours


def test_album_mode_and_no_write(beets) -> None:  # type: ignore[no-untyped-def]
    beet, rows = beets["beet"], beets["rows"]
    beet("import", str(beets["src"]))
    for r in rows():
        write_genres(r[0], [], TagOptions())
    beet("modify", "-y", "-W", "genres=Blues")
    beet("genre-predict", "-a", "-f", "-W")  # album level, database only
    after = rows()
    assert len({r[1] for r in after}) == 1 and after[0][1] != "Blues"
    assert all(read_genres(r[0]) == [] for r in after)  # -W: files untouched
    album = beet("ls", "-a", "-f", "$genres|$genre_source").stdout.strip()
    assert album == f"{after[0][1]}|genrepredict"


def test_a_bad_file_is_logged_and_the_rest_carry_on(beets) -> None:  # type: ignore[no-untyped-def]
    beet, rows = beets["beet"], beets["rows"]
    beet("import", str(beets["src"]))
    beet("modify", "-y", "-W", "genres=Blues")
    bad = next(r[0] for r in rows() if r[0].endswith(".ogg"))
    Path(bad).write_bytes(b"OggS" + os.urandom(3000))
    out = beet("-v", "genre-predict", "-f", "-W")
    assert f"cannot analyse {bad}" in out.stderr
    by_path = {r[0]: r[1] for r in rows()}
    assert by_path[bad] == "Blues" and sum(v != "Blues" for v in by_path.values()) == 2


def test_the_cache_is_shared_with_scan_and_between_runs(beets) -> None:  # type: ignore[no-untyped-def]
    beet = beets["beet"]
    beet("import", str(beets["src"]))
    out = beet("-v", "genre-predict", "-f")
    assert "0 analysed, 3 from the genre-tagger cache" in out.stderr  # second pass: no model work
    scan = subprocess.run([sys.executable, "-m", "tagger", "scan", "--db",
                           f"sqlite:///{beets['cache']}", "--dry-run", str(beets["lib"])],
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert scan.returncode == 0, scan.stderr
    assert "0 analysed" in scan.stderr  # genre-tagger scan reuses the plugin's analyses


def test_the_genre_map_in_beets_config(beets) -> None:  # type: ignore[no-untyped-def]
    beet, rows, tmp = beets["beet"], beets["rows"], beets["tmp"]
    beet("import", str(beets["src"]))
    beet("genre-predict", "-f")  # track by track, as below
    plain = {r[0]: r[1].split("; ") for r in rows()}
    top = next(iter(plain.values()))[0]
    base = {"cache_db": f"sqlite:///{beets['cache']}", "min_confidence": 0.01, "device": "cpu"}
    configure(tmp, {}, {**base, "genres": f"{{rename: {{'{top}': 'Mine'}}, parents: yes}}"})
    out = beet("-v", "genre-predict", "-f")
    assert "0 analysed, 3 from the genre-tagger cache" in out.stderr
    for path, genres in ((r[0], r[1].split("; ")) for r in rows()):
        assert top not in genres and read_genres(path) == genres
        if plain[path][0] == top:
            assert genres[0] == "Mine"
    configure(tmp, {}, {**base, "genres": "{exclude: [Rokc]}"})
    bad = beet("genre-predict", "-f", ok=False)
    assert bad.returncode != 0 and "did you mean 'Rock'" in bad.stderr


def test_the_plugins_cache_on_postgresql(beets, postgres) -> None:  # type: ignore[no-untyped-def]
    """``cache_db`` naming a PostgreSQL server (the cache several machines share)."""
    url = postgres.database()
    beet = runner(configure(beets["tmp"], {}, {"cache_db": url, "min_confidence": 0.01,
                                               "device": "cpu"}), timeout=600)
    out = beet("-v", "import", str(beets["src"]))
    assert "genrepredict: 3 analysed, 0 from the genre-tagger cache, 0 failed" in out.stderr
    again = beet("-v", "genre-predict", "-f")
    assert "0 analysed, 3 from the genre-tagger cache" in again.stderr
    assert len([r for r in beets["rows"]() if r[1]]) == 3


@pytest.mark.parametrize("album", ["yes", "no"])
def test_import_and_genre_predict_follow_one_album_rule(beets, album: str) -> None:  # type: ignore[no-untyped-def]
    """``album`` in the plugin's config is the one rule: import decides with it, and
    ``genre-predict`` (twice) finds every track decided under the same settings and rewrites
    nothing (it re-decided each track alone after an album import, and ``-a`` flipped them
    back). Changing the rule for a run (``-a``) is a new decision."""
    tmp, rows = beets["tmp"], beets["rows"]
    settings = {"cache_db": f"sqlite:///{beets['cache']}", "min_confidence": 0.01,
                "device": "cpu", "album": album}
    beet = runner(configure(tmp, {}, settings), timeout=600)
    beet("import", str(beets["src"]))
    imported = rows()
    assert all(r[2] == "genrepredict" for r in imported), imported
    if album == "yes":
        assert len({r[1] for r in imported}) == 1  # one set for the album
    stamps = {r[0]: os.stat(r[0]).st_mtime_ns for r in imported}
    for _ in range(2):
        out = beet("-v", "genre-predict", "-f")
        assert rows() == imported, out.stderr
        assert {p: os.stat(p).st_mtime_ns for p in stamps} == stamps  # no file rewritten
    if album == "no":  # asked for once: one set for the album, then the config's rule again
        beet("genre-predict", "-a", "-f")
        assert len({r[1] for r in rows()}) == 1
        beet("genre-predict", "-f")
        assert rows() == imported


def test_genres_the_plugin_wrote_are_genre_taggers_in_the_shared_cache(beets) -> None:  # type: ignore[no-untyped-def]
    """Whoever writes the file (the import, ``genre-predict``, ``beet write``), the cache
    learns what the plugin's genres look like in it: learning never takes them for a person's,
    and a person's edit in beets afterwards is theirs."""
    from tagger.cache import Cache
    from tagger.training.labels import person_genres

    beet, rows = beets["beet"], beets["rows"]
    beet("import", str(beets["src"]))
    with Cache(f"sqlite:///{beets['cache']}") as cache:
        for path, genres, *_ in rows():
            row = cache.get(path)
            assert row is not None and row.genres_written == read_genres(path), (path, row)
            assert "; ".join(read_genres(path)) == genres  # what beets shows, the file holds
            assert person_genres(read_genres(path), row.genres_written, row.genres_before) == []
    # The files came from a folder now emptied (an import that moves): a scan finds their
    # analysis under the old names by their audio, and their record stays ours.
    for f in beets["src"].iterdir():
        f.unlink()
    scan = subprocess.run([sys.executable, "-m", "tagger", "scan", "--db",
                           f"sqlite:///{beets['cache']}", "--min-confidence", "0.01",
                           str(beets["lib"])], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert scan.returncode == 0 and "0 analysed" in scan.stderr, scan.stderr
    with Cache(f"sqlite:///{beets['cache']}") as cache:
        for path, *_ in rows():
            row = cache.get(path)
            assert row is not None and row.analysed_at is not None, (path, row)
            assert person_genres(read_genres(path), row.genres_written, row.genres_before) == []
    flac = next(r[0] for r in rows() if r[0].endswith(".flac"))
    beet("modify", "-y", f"path:{flac}", "genres=Blues")  # beets writes the person's edit
    with Cache(f"sqlite:///{beets['cache']}") as cache:
        row = cache.get(flac)
        assert row is not None and read_genres(flac) == ["Blues"]
        assert person_genres(["Blues"], row.genres_written, row.genres_before) == ["Blues"]
