"""Genre writes on real files of every format: multi-values, nothing else changes, crash-safe."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import mutagen
import pytest
from tagfiles import TAG_FORMATS, ffprobe, ffprobe_genres, make_tagged, snapshot, stream_md5

from tagger.errors import TagError
from tagger.formats.identity import audio_identity
from tagger.tags import TagOptions, read_genres, write_genres

GENRES = ["Rock", "Alternative Rock", "Post-Punk"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tagged")
    return {name: make_tagged(d, name) for name in TAG_FORMATS}


@pytest.fixture
def files(originals: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, p in originals.items():
        out[name] = tmp_path / p.name
        shutil.copy2(p, out[name])
    return out


@pytest.mark.parametrize("name", list(TAG_FORMATS))
def test_write_changes_only_the_genre(files: dict[str, Path], name: str) -> None:
    path = files[name]
    before = snapshot(path)
    assert before["mutagen"] or before["ffprobe_tags"], "fixture lacks rich tags"
    assert read_genres(path) == []
    st = path.stat()
    write_genres(path, GENRES)
    assert read_genres(path) == GENRES  # real multi-values, most confident first
    assert snapshot(path) == before  # every other tag, the cover and the audio are identical
    after = path.stat()
    assert after.st_mode == st.st_mode and (after.st_uid, after.st_gid) == (st.st_uid, st.st_gid)


@pytest.mark.parametrize("name", list(TAG_FORMATS))
def test_a_second_reader_agrees(files: dict[str, Path], name: str) -> None:
    write_genres(files[name], GENRES)
    seen = ffprobe_genres(files[name])
    assert seen is not None and seen.startswith("Rock")
    if name == "mp3-v23":
        assert seen == "Rock; Alternative Rock; Post-Punk"  # v2.3 joins with the separator
    elif name in ("flac", "ogg", "opus"):
        assert seen == "Rock;Alternative Rock;Post-Punk"  # ffprobe's join of repeated fields


def test_id3_versions(files: dict[str, Path]) -> None:
    from mutagen.id3 import ID3

    write_genres(files["mp3-v23"], GENRES)
    tags = ID3(files["mp3-v23"])
    assert tags.version[:2] == (2, 3)  # the file's own version is kept
    assert tags.getall("TCON")[0].text == ["Rock; Alternative Rock; Post-Punk"]
    assert read_genres(files["mp3-v23"]) == GENRES
    write_genres(files["mp3-v24"], GENRES)
    tags = ID3(files["mp3-v24"])
    assert tags.version[:2] == (2, 4) and len(tags.getall("TCON")) == 1
    assert tags.getall("TCON")[0].text == GENRES  # one frame, NUL-separated values
    write_genres(files["mp3-v24"], ["Jazz", "Soul"], TagOptions(id3_version=3, id3v23_separator=" / "))
    assert ID3(files["mp3-v24"]).getall("TCON")[0].text == ["Jazz / Soul"]


@pytest.mark.parametrize("name", ["flac", "mp3-v24", "m4a", "wma"])
def test_remove_genres(files: dict[str, Path], name: str) -> None:
    write_genres(files[name], GENRES)
    write_genres(files[name], [])
    assert read_genres(files[name]) == []


@pytest.mark.parametrize("name", list(TAG_FORMATS))
def test_audio_identity_survives_tag_writes(files: dict[str, Path], name: str) -> None:
    before = audio_identity(files[name])
    assert not before.startswith("file:"), before  # the container was understood
    write_genres(files[name], GENRES)
    write_genres(files[name], ["A much longer genre name " * 20, "More"])  # forces re-layout
    assert audio_identity(files[name]) == before


def test_audio_identity_changes_with_the_audio(tmp_path: Path) -> None:
    a = make_tagged(tmp_path, "flac", seconds=4.0)
    id_a = audio_identity(a)
    b = make_tagged(tmp_path, "flac", seconds=5.0)  # same name, new audio
    assert audio_identity(b) != id_a


def test_the_mtime_moves_by_default_and_stays_when_asked(files: dict[str, Path]) -> None:
    """Players (Navidrome, Jellyfin, Plex, beets' update) re-read a file only when its mtime
    moves: by default it does; keep_mtime keeps it for "date added" sorters."""
    p = files["flac"]
    os.utime(p, ns=(1_000_000_000, 2_000_000_000))
    write_genres(p, GENRES)
    assert p.stat().st_mtime_ns > 2_000_000_000
    os.utime(p, ns=(1_000_000_000, 2_000_000_000))
    write_genres(p, ["Jazz"], TagOptions(keep_mtime=True))
    assert p.stat().st_mtime_ns == 2_000_000_000


def test_read_only_file_and_folder_are_refused_cleanly(files: dict[str, Path], tmp_path: Path) -> None:
    p = files["flac"]
    data = p.read_bytes()
    p.chmod(0o444)
    with pytest.raises(TagError) as e:
        write_genres(p, GENRES)
    assert e.value.code == "read-only" and p.read_bytes() == data
    p.chmod(0o644)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(TagError) as e:
            write_genres(p, GENRES)
        assert e.value.code == "read-only" and p.read_bytes() == data
    finally:
        tmp_path.chmod(0o755)
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temp left


def test_vanished_and_non_audio_files(tmp_path: Path) -> None:
    with pytest.raises(TagError) as e:
        write_genres(tmp_path / "gone.flac", GENRES)
    assert e.value.code == "missing"
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"junk" * 100)
    with pytest.raises(TagError):
        write_genres(junk, GENRES)
    assert junk.read_bytes() == b"junk" * 100


def test_full_disk_leaves_the_file_whole(originals: dict[str, Path], tmp_path: Path) -> None:
    """A real full file system: a tiny tmpfs-like loop is not available, so fill a RAM disk."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.system(f"mount -t tmpfs -o size=600k tmpfs {mnt} 2>/dev/null") != 0:
        pytest.skip("cannot mount tmpfs here")
    try:
        src = originals["flac"]
        target = mnt / src.name
        shutil.copy2(src, target)
        filler = mnt / "filler"
        # leave less room than a copy of the file needs
        with open(filler, "wb") as fh, contextlib.suppress(OSError):
            fh.write(b"\0" * (600 * 1024 - target.stat().st_size - 4096))
        data = target.read_bytes()
        with pytest.raises(TagError) as e:
            write_genres(target, GENRES)
        assert e.value.code == "disk-full"
        assert target.read_bytes() == data
        assert {p.name for p in mnt.iterdir()} == {target.name, "filler"}  # no temp left
    finally:
        os.system(f"umount {mnt}")


def test_mutagen_reads_what_players_read(files: dict[str, Path]) -> None:
    write_genres(files["flac"], GENRES)
    assert mutagen.File(files["flac"])["genre"] == GENRES
    write_genres(files["m4a"], GENRES)
    assert mutagen.File(files["m4a"])["\xa9gen"] == GENRES


@pytest.mark.parametrize(("name", "ext"), [("flac", ".mp3"), ("ogg", ".m4a"), ("mp3-v24", ".flac"),
                                           ("m4a", ".ogg"), ("wav", ".aiff")])
def test_a_file_with_the_wrong_extension_is_tagged_as_what_it_is(files: dict[str, Path], name: str,
                                                                  ext: str) -> None:
    """mutagen picks a format partly by name; the content decides here (a FLAC named .mp3 is a
    FLAC), so a misnamed file is tagged, not called damaged."""
    path = files[name].rename(files[name].with_name(f"misnamed{ext}"))

    def others() -> tuple[dict[str, str], str]:  # what ffmpeg sees (mutagen.File is misled too)
        tags = {k.lower(): v for k, v in (ffprobe(path)["format"].get("tags") or {}).items()}
        return {k: v for k, v in tags.items() if k != "genre"}, stream_md5(path, "0:a:0")

    before = others()
    write_genres(path, GENRES)
    assert read_genres(path) == GENRES
    assert others() == before
