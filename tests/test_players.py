"""What players see: every format genre-tagger writes, read back by the readers players and
servers are built on (TagLib, ffprobe, mediainfo, mutagen) and by a real MPD.

The expected table below is the README's "What your player shows" table; when a reader's
new version reads otherwise, this test fails and both must change together.
``python -m pytest tests/test_players.py -s`` prints the table.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from readers import Mpd, ffprobe, mediainfo, mutagen_genres, taglib
from tagfiles import TAG_FORMATS, make_tagged

from tagger.tags import TagOptions, write_genres

G = ["Electronic", "Ambient", "Techno"]
ALL, FIRST, NONE = G, G[:1], []
SEMI, SEMI_SPACE, SLASHED = ["Electronic;Ambient;Techno"], ["Electronic; Ambient; Techno"], \
    ["Electronic / Ambient / Techno"]

#: file -> (TagLib, ffprobe, mediainfo, mutagen, MPD), as measured (Debian 12: TagLib 2.1 in
#: pytaglib, ffmpeg 5.1, MediaInfo 23.04, MPD 0.23.12). Sorted where a reader reorders.
EXPECTED: dict[str, tuple[list[str], list[str], list[str], list[str], list[str]]] = {
    "mp3-v24": (ALL, FIRST, FIRST, ALL, ALL),
    "mp3-v23": (SEMI_SPACE, SEMI_SPACE, SEMI_SPACE, ALL, SEMI_SPACE),
    "mp3-v23 with id3v24": (ALL, FIRST, FIRST, ALL, ALL),
    "flac": (ALL, SEMI, SLASHED, ALL, ALL),
    "ogg": (ALL, SEMI, SLASHED, ALL, ALL),
    "opus": (ALL, SEMI, SLASHED, ALL, ALL),
    "m4a": (ALL, FIRST, SLASHED, ALL, FIRST),
    "alac": (ALL, FIRST, SLASHED, ALL, FIRST),
    "wav": (ALL, SEMI_SPACE, FIRST, ALL, SEMI_SPACE),
    "aiff": (ALL, FIRST, FIRST, ALL, NONE),
    "wma": (sorted(ALL), FIRST, FIRST, ALL, FIRST),
    "speex": (ALL, SEMI, NONE, ALL, SEMI),
    "ogg-flac": (ALL, SEMI, NONE, ALL, ALL),
    "3g2": (ALL, FIRST, SLASHED, ALL, FIRST),
}
READERS = ("TagLib", "ffprobe", "mediainfo", "mutagen", "MPD")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Path], Mpd]]:
    pytest.importorskip("taglib", reason="TagLib's binding: pip install pytaglib (in [test])")
    if not Mpd.available() or shutil.which("mediainfo") is None:
        pytest.skip("needs a real MPD and mediainfo: apt install mpd mediainfo (.ci/run does)")
    work = tmp_path_factory.mktemp("players")
    music = work / "music"
    music.mkdir()
    files = {}
    for name in TAG_FORMATS:
        files[name] = make_tagged(music, name)
        write_genres(files[name], G)  # the defaults: each file keeps its ID3 version
    upgraded = work / "v23"
    upgraded.mkdir()
    moved = music / "mp3-v23-as-v24.mp3"
    make_tagged(upgraded, "mp3-v23").rename(moved)
    write_genres(moved, G, TagOptions(id3_version=4))  # the id3v24 setting
    files["mp3-v23 with id3v24"] = moved
    mpd = Mpd(music, work)
    try:
        mpd.update()
        yield files, mpd
    finally:
        mpd.close()


def _seen(path: Path, mpd: Mpd) -> tuple[list[str] | None, ...]:
    return (taglib(path), ffprobe(path), mediainfo(path), mutagen_genres(path),
            mpd.genres(path.name))


def test_what_each_reader_sees_is_the_readmes_table(
        library: tuple[dict[str, Path], Mpd]) -> None:
    files, mpd = library
    seen = {name: _seen(path, mpd) for name, path in files.items()}
    width = max(map(len, seen))
    print("\n" + " | ".join(["file".ljust(width), *READERS]))
    for name, row in seen.items():
        print(" | ".join([name.ljust(width), *(", ".join(f"'{x}'" for x in v) or "(none)"
                                                for v in (r or [] for r in row))]))
    got = {name: tuple(sorted(r) if name == "wma" and i == 0 else r for i, r in enumerate(row))
           for name, row in seen.items()}
    assert set(got) == set(EXPECTED), "a format without its row in the README's players table"
    wrong = {name: (got[name], want) for name, want in EXPECTED.items() if got[name] != want}
    assert not wrong, f"the README's players table is out of date: {wrong}"


def test_every_value_reaches_taglib_and_mutagen_in_every_format(
        library: tuple[dict[str, Path], Mpd]) -> None:
    """The promise that holds whatever a player does with them: every genre is stored as a
    value of its own (most confident first) wherever the format allows it; ID3v2.3 joins them
    with the separator it is told, and mutagen, reading them back, splits them again."""
    files, _ = library
    for name, path in files.items():
        assert mutagen_genres(path) == G, name
        tl = taglib(path)
        if tl is not None and name != "mp3-v23":
            assert sorted(tl) == sorted(G), name


def test_the_id3v24_setting_writes_v24_into_v23_files(tmp_path: Path) -> None:
    """``scan --id3v24``: a v2.3 MP3 comes out v2.4, each genre a value for TagLib and MPD;
    asking for both versions is a configuration error that names them."""
    import os
    import subprocess
    import sys

    from mutagen.id3 import ID3

    music = tmp_path / "music"
    music.mkdir()
    mp3 = make_tagged(music, "mp3-v23", seconds=6.0)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GENRE_TAGGER_MIN_CONFIDENCE="0.01",
               XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    both = subprocess.run([sys.executable, "-m", "tagger", "scan", "--id3v23", "--id3v24",
                           str(music), "--db", db], capture_output=True, text=True, env=env)
    assert both.returncode == 2 and "'id3v23' and 'id3v24'" in both.stderr, both.stderr
    assert ID3(mp3).version[:2] == (2, 3)
    r = subprocess.run([sys.executable, "-m", "tagger", "scan", "--id3v24", "--device", "cpu",
                        str(music), "--db", db], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert ID3(mp3).version[:2] == (2, 4)
    assert len(taglib(mp3) or []) == len(mutagen_genres(mp3) or []) >= 1
