"""Writes on a home server: as root in folders others can write, with ACLs, extended attributes
and hard links, on file systems that keep no modes. Real files, real processes, real mounts.

The racing attacker runs as another user (nobody) and swaps our temporary copy for a symlink
to a root-only file at a different step on every try; ``-m slow`` runs it 100 times.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tagfiles import TAG_FORMATS, make_tagged, snapshot

from tagger.errors import TagError
from tagger.formats.identity import audio_identity
from tagger.tags import TagOptions, read_genres, write_genres

GENRES = ["Electronic", "Ambient"]
NOBODY = 65534
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (as the service runs)")


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("home-originals")
    return {name: make_tagged(d, name) for name in TAG_FORMATS}


def copy_in(originals: dict[str, Path], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    # Bytes only: a FAT file system has no modes or times for copy2 to set.
    return {name: Path(shutil.copyfile(p, folder / p.name)) for name, p in originals.items()}


def xattrs(path: Path) -> dict[str, bytes]:
    return {n: os.getxattr(path, n) for n in os.listxattr(path)}


# --- extended attributes and ACLs ----------------------------------------------------------------


@root_only
def test_extended_attributes_and_acls_survive_every_formats_write(
        originals: dict[str, Path], tmp_path: Path) -> None:
    """user.*, trusted.* (root) and the access ACL that gives a media server's user access are
    carried over; the folder's default ACL does not add one the file lacked."""
    folder = tmp_path / "album"
    files = copy_in(originals, folder)
    plain = files.pop("flac")  # this one has no ACL; the folder's default must not give it one
    subprocess.run(["setfacl", "-d", "-m", "u:12345:rwx", str(folder)], check=True)
    for p in files.values():
        os.setxattr(p, "user.note", b"ripped 2009, from vinyl")
        os.setxattr(p, "trusted.origin", b"\x00\x01binary")
        subprocess.run(["setfacl", "-m", f"u:{NOBODY}:r,g:{NOBODY}:rw", str(p)], check=True)
    before = {p: (xattrs(p), stat.S_IMODE(p.stat().st_mode)) for p in [*files.values(), plain]}
    acl = {p: subprocess.run(["getfacl", "-cn", str(p)], capture_output=True, text=True).stdout
           for p in files.values()}
    for p in [*files.values(), plain]:
        write_genres(p, GENRES)
        assert read_genres(p) == GENRES
        assert (xattrs(p), stat.S_IMODE(p.stat().st_mode)) == before[p], p.name
    for p in files.values():
        assert subprocess.run(["getfacl", "-cn", str(p)], capture_output=True,
                              text=True).stdout == acl[p]
        assert f"user:{NOBODY}:r" in acl[p]
    assert "system.posix_acl_access" not in xattrs(plain)


@root_only
def test_a_file_system_without_extended_attributes_still_tags(originals: dict[str, Path],
                                                               tmp_path: Path) -> None:
    mount = tmp_path / "ramfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "ramfs", "ramfs", str(mount)]).returncode:
        pytest.skip("ramfs cannot be mounted here")
    try:
        p = Path(shutil.copy2(originals["ogg"], mount / "a.ogg"))
        with pytest.raises(OSError):
            os.setxattr(p, "user.x", b"1")  # really none
        write_genres(p, GENRES)
        assert read_genres(p) == GENRES
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_the_mtime_setting_and_its_old_name() -> None:
    """keep_mtime is the setting now (the mtime moves by default); a config that still says
    touch = true/false means what it meant."""
    from tagger.settings import build_settings

    assert build_settings({}).tag_options().keep_mtime is False
    assert build_settings({"keep_mtime": True}).tag_options().keep_mtime is True
    assert build_settings({"touch": True}).keep_mtime is False
    assert build_settings({"touch": "false"}).keep_mtime is True
    assert build_settings({"hard_links": "split"}).tag_options().hard_links == "split"


# --- hard links ----------------------------------------------------------------------------------


def test_a_hard_linked_file_is_left_alone_by_default(originals: dict[str, Path],
                                                     tmp_path: Path) -> None:
    library, seeding = tmp_path / "library", tmp_path / "torrents"
    p = copy_in({"mp3": originals["mp3-v24"]}, library)["mp3"]
    seeding.mkdir()
    other = seeding / "seed.mp3"
    os.link(p, other)
    data = p.read_bytes()
    with pytest.raises(TagError) as e:
        write_genres(p, GENRES)
    assert e.value.code == "hard-linked" and "hard-linked (2 names)" in e.value.reason
    assert p.read_bytes() == data and os.path.samefile(p, other) and p.stat().st_nlink == 2


def test_hard_links_split_knowingly(originals: dict[str, Path], tmp_path: Path) -> None:
    p = copy_in({"flac": originals["flac"]}, tmp_path / "library")["flac"]
    other = tmp_path / "seed.flac"
    os.link(p, other)
    data = other.read_bytes()
    write_genres(p, GENRES, TagOptions(hard_links="split"))
    assert read_genres(p) == GENRES and other.read_bytes() == data
    assert not os.path.samefile(p, other) and other.stat().st_nlink == 1


def test_hard_links_written_in_place_change_every_name(originals: dict[str, Path],
                                                       tmp_path: Path) -> None:
    files = copy_in(originals, tmp_path / "library")
    for name, p in files.items():
        other = tmp_path / f"seed-{p.name}"
        os.link(p, other)
        ino, before = p.stat().st_ino, snapshot(p)
        write_genres(p, GENRES, TagOptions(hard_links="in-place"))
        assert read_genres(other) == GENRES, name
        assert p.stat().st_ino == ino and p.stat().st_nlink == 2 and os.path.samefile(p, other)
        assert snapshot(p) == before, name  # every other tag, the cover and the audio


# --- file systems without owners or modes ---------------------------------------------------------


def _fuse(cmd: list[str], mount: Path) -> Iterator[Path]:
    if shutil.which(cmd[0]) is None or not os.path.exists("/dev/fuse"):
        pytest.skip(f"{cmd[0]} and /dev/fuse are needed (apt install {cmd[0]})")
    mount.mkdir(exist_ok=True)
    subprocess.run([*cmd, str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["fusermount", "-u", str(mount)], capture_output=True)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def fat(tmp_path: Path) -> Iterator[Path]:
    """A real FAT file system through fusefat: no owners, no modes (chmod: ENOSYS), no xattrs."""
    image = tmp_path / "usb.img"
    if shutil.which("mkfs.vfat") is None:
        pytest.skip("mkfs.vfat is needed (apt install dosfstools)")
    subprocess.run(["mkfs.vfat", "-C", str(image), "16384"], check=True, capture_output=True)
    yield from _fuse(["fusefat", "-o", "rw+", str(image)], tmp_path / "usb")


@root_only
def test_fat_through_fuse_tags(originals: dict[str, Path], fat: Path) -> None:
    """fusefat refuses chmod (ENOSYS) and a truncate to the same size (EPERM), which mutagen
    does after every save; and it garbles some rewrites that move data (seen: ALAC in MP4, WAV),
    which the verification before the rename catches: those are refused, byte-identical."""
    files = copy_in(originals, fat / "album")
    with pytest.raises(OSError):
        os.chmod(files["flac"], 0o600)  # really no modes
    tagged = set()
    for name, p in files.items():
        data = p.read_bytes()
        try:
            write_genres(p, GENRES)
        except TagError as e:
            assert e.code == "unsafe-rewrite", (name, e)
            assert p.read_bytes() == data, name
            continue
        assert read_genres(p) == GENRES, name
        tagged.add(name)
    assert {"mp3-v24", "mp3-v23", "flac", "ogg", "opus", "m4a"} <= tagged
    assert not [n for n in os.listdir(fat / "album") if n.startswith(".")]


@pytest.fixture
def no_chmod(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """bindfs over a folder, refusing chmod and chown (EPERM), as some FUSE drivers do."""
    backing = tmp_path / "backing"
    backing.mkdir()
    for mount in _fuse(["bindfs", "--chmod-deny", "--chown-deny", str(backing)],
                       tmp_path / "mnt"):
        yield backing, mount


def test_a_file_system_that_refuses_modes_is_named_and_the_refusal_is_permanent(
        originals: dict[str, Path], no_chmod: tuple[Path, Path]) -> None:
    from tagger.library.tagging import TRANSIENT

    backing, mount = no_chmod
    shutil.copy2(originals["ogg"], backing / "a.ogg")
    os.chmod(backing / "a.ogg", 0o640)  # the new copy would be 0600: it cannot keep this
    data = (backing / "a.ogg").read_bytes()
    with pytest.raises(TagError) as e:
        write_genres(mount / "a.ogg", GENRES)
    assert e.value.code == "filesystem" and e.value.code not in TRANSIENT
    assert "fuse" in e.value.reason and "keeps no file modes" in e.value.reason
    assert (backing / "a.ogg").read_bytes() == data
    assert not [n for n in os.listdir(backing) if n.startswith(".genre-tagger")]  # no debris
    os.chmod(backing / "a.ogg", 0o600)  # the same mode a new copy gets: nothing to carry
    write_genres(mount / "a.ogg", GENRES)
    assert read_genres(backing / "a.ogg") == GENRES


# --- a hostile user racing a root writer ---------------------------------------------------------

ATTACKER = r"""
import ctypes, os, random, select, struct, sys, time
folder, victim, seconds, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
# every step of a write: the copy made, opened, written, its attributes set, closed, renamed
mask = 0x100 | 0x20 | 0x2 | 0x4 | 0x8 | 0x80 | 0x40
assert libc.inotify_add_watch(fd, folder.encode(), mask) >= 0
seen, target, swaps = {}, {}, 0
end = time.time() + seconds
import signal
signal.signal(signal.SIGTERM, lambda *_: (print("swaps", swaps, flush=True), os._exit(0)))
print("ready", flush=True)
while time.time() < end:
    if not select.select([fd], [], [], 0.05)[0]:
        continue
    data = os.read(fd, 1 << 16)
    pos = 0
    while pos < len(data):
        _, _, _, n = struct.unpack_from("iIII", data, pos)
        name = data[pos + 16:pos + 16 + n].rstrip(b"\0").decode(errors="replace")
        pos += 16 + n
        if not (name.startswith(".genre-tagger-") and name.endswith(".tmp")):
            continue
        seen[name] = seen.get(name, 0) + 1
        target.setdefault(name, rng.randint(1, 12))  # the step of this copy to strike at
        path = os.path.join(folder, name)
        if seen[name] >= target[name] and not os.path.islink(path):
            try:
                os.rename(path, path + ".moved")
                os.symlink(victim, path)
                swaps += 1
            except OSError:
                pass
print("swaps", swaps, flush=True)
"""


def _fingerprint(p: Path) -> tuple[int, int, int, int, str]:
    st = os.lstat(p)
    return (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Path]:
    """A folder other users can reach (pytest's own are root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="genre-tagger-race-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def race(originals: dict[str, Path], tmp_path: Path, seed: int) -> tuple[int, dict[str, int]]:
    """One try: the album folder and its files belong to nobody; root tags every file while
    nobody swaps the copies for links to a root-only file (an audio file mutagen could write)."""
    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir(mode=0o700)
    victim = Path(shutil.copy2(originals["mp3-v24"], secret_dir / "secret.mp3"))
    os.chmod(victim, 0o600)
    album = tmp_path / "album"
    files = copy_in(originals, album)
    for p in [album, *files.values()]:
        os.chown(p, NOBODY, NOBODY)
    os.chmod(album, 0o755)
    victim_before = _fingerprint(victim)
    audio = {n: audio_identity(p) for n, p in files.items()}
    attacker = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
         "-c", ATTACKER, str(album), str(victim), "60", str(seed)],
        stdout=subprocess.PIPE, text=True)
    assert attacker.stdout is not None and attacker.stdout.readline().strip() == "ready"
    outcomes: dict[str, str] = {}
    attempts: dict[str, int] = {}
    try:
        for name, p in files.items():
            for _ in range(3):  # three writes a file: more steps to strike at
                try:
                    write_genres(p, GENRES if outcomes.get(name) != "tagged" else ["Jazz"])
                    outcomes[name] = "tagged"
                except TagError as e:
                    assert e.code in ("changed", "busy"), (name, e)
                    outcomes.setdefault(name, e.code)
                attempt = "tagged" if outcomes.get(name) == "tagged" else str(outcomes.get(name))
                attempts[attempt] = attempts.get(attempt, 0) + 1
    finally:
        attacker.terminate()
        out, _ = attacker.communicate(timeout=10)
    swaps = int(out.split()[-1])
    assert _fingerprint(victim) == victim_before  # not chmod'ed, chown'ed, tagged or replaced
    assert [p.name for p in secret_dir.iterdir()] == ["secret.mp3"]
    for name, p in files.items():
        st = os.lstat(p)
        assert stat.S_ISREG(st.st_mode), f"{name} became a link"
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
        assert audio_identity(p) == audio[name], name
        if outcomes[name] == "tagged":
            assert read_genres(p) in (GENRES, ["Jazz"]), name
    return swaps, attempts


def _can_race() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (the attacker runs as nobody)")


@root_only
@pytest.mark.parametrize("seed", range(3))
def test_a_user_racing_a_root_writer_gains_nothing(originals: dict[str, Path], world: Path,
                                                   seed: int) -> None:
    _can_race()
    swaps, _ = race(originals, world, seed)
    assert swaps > 0  # the attacker really struck


@root_only
@pytest.mark.slow
def test_a_user_racing_a_root_writer_100_times(originals: dict[str, Path], world: Path) -> None:
    _can_race()
    total: dict[str, int] = {}
    swaps = 0
    started = time.monotonic()
    for seed in range(100):
        (world / str(seed)).mkdir(mode=0o755)
        n, attempts = race(originals, world / str(seed), seed)
        swaps += n
        for o, count in attempts.items():
            total[o] = total.get(o, 0) + count
    print(f"\n100 tries in {time.monotonic() - started:.0f} s: {swaps} swaps, writes {total}")
    assert swaps > 100


FOLDER_SWAPPER = r"""
import os, random, sys, time
library, secret, seconds, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
album, away = os.path.join(library, "album"), os.path.join(library, "album.away")
swaps, end = 0, time.time() + seconds
print("ready", flush=True)
while time.time() < end:  # the album folder is a link to the root-only folder for a moment
    try:
        os.rename(album, away)
        os.symlink(secret, album)
        swaps += 1
        time.sleep(rng.random() / 1000)
        os.unlink(album)
        os.rename(away, album)
    except OSError:
        pass
    time.sleep(rng.random() / 1000)
print("swaps", swaps, flush=True)
"""


@root_only
def test_a_user_swapping_a_folder_on_the_way_cannot_lead_a_root_writer_out(
        originals: dict[str, Path], world: Path) -> None:
    """The album folder's parent is the user's: they swap the album folder for a link to a
    root-only folder holding files of the same names, over and over, while root tags the album
    (without the analysed stat to compare with, as a direct write has none). Every write lands
    in the album or is refused; the root-only files never change."""
    _can_race()
    library, secret = world / "library", world / "root-only"
    secret.mkdir(mode=0o700)
    files = copy_in(originals, library / "album")
    for p in [library, library / "album", *files.values()]:
        os.chown(p, NOBODY, NOBODY)
    victims = copy_in(originals, secret)
    for v in victims.values():
        os.chmod(v, 0o600)
    before = {n: _fingerprint(v) for n, v in victims.items()}
    audio = {n: audio_identity(p) for n, p in files.items()}
    swapper = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable,
         "-c", FOLDER_SWAPPER, str(library), str(secret), "60", "1"],
        stdout=subprocess.PIPE, text=True)
    assert swapper.stdout is not None and swapper.stdout.readline().strip() == "ready"
    codes: dict[str, int] = {}
    try:
        for _ in range(8):
            for p in files.values():
                try:
                    write_genres(p, GENRES, roots=(str(library),))
                    code = "tagged"
                except TagError as e:
                    code = e.code
                codes[code] = codes.get(code, 0) + 1
    finally:
        swapper.terminate()
        swapper.communicate(timeout=10)
        # stopped mid-swap: the link in place, or the folder away and no link made yet
        if (library / "album").is_symlink():
            os.unlink(library / "album")
        if not (library / "album").exists() and (library / "album.away").is_dir():
            os.rename(library / "album.away", library / "album")
    print("writes:", codes)
    assert set(codes) <= {"tagged", "changed", "missing", "outside-roots", "busy"}, codes
    assert codes.get("tagged", 0) > 0 and len(codes) > 1  # it tagged, and the swaps struck
    assert {n: _fingerprint(v) for n, v in victims.items()} == before
    assert sorted(p.name for p in secret.iterdir()) == sorted(v.name for v in victims.values())
    for name, p in files.items():
        assert stat.S_ISREG(os.lstat(p).st_mode) and audio_identity(p) == audio[name], name


# --- the cache is the person's alone ---------------------------------------------------------------


def test_the_default_cache_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It holds the library's paths and history: folder 0700, database (and WAL) 0600, also
    when an older release left them readable by all. A location the person chose is theirs."""
    from tagger.cache import Cache

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with Cache() as cache:
        cache.upsert("/music/a.flac", size=1, mtime_ns=1)
    folder = tmp_path / "state" / "genre-tagger"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [folder, *folder.iterdir()]}
    assert modes.pop("genre-tagger") == 0o700 and set(modes.values()) == {0o600}, modes
    os.chmod(folder, 0o755)
    for p in folder.iterdir():
        os.chmod(p, 0o644)
    Cache().close()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    chosen = tmp_path / "shared"
    chosen.mkdir(mode=0o755)
    os.chmod(chosen, 0o755)
    Cache(f"sqlite:///{chosen / 'cache.sqlite'}").close()
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o755  # theirs: left as it is
    assert stat.S_IMODE((chosen / "cache.sqlite").stat().st_mode) == 0o600  # new: ours


# --- Vorbis comments that mutagen would rewrite --------------------------------------------------


def _set_raw_comments(p: Path, entries: list[bytes], vendor: bytes = b"Xiphophorus libVorbis I 20000508",
                      count: int | None = None) -> None:
    """Store exactly these comment entries (as old encoders wrote them), through mutagen's own
    block and page layout."""
    import mutagen

    f = mutagen.File(p)
    data = (len(vendor).to_bytes(4, "little") + vendor
            + (len(entries) if count is None else count).to_bytes(4, "little")
            + b"".join(len(e).to_bytes(4, "little") + e for e in entries)
            + (b"\x01" if p.suffix == ".ogg" else b""))
    f.tags.write = lambda *args, **kwargs: data
    f.save()


def _raw_entries(p: Path) -> list[bytes]:
    """The comment entries as stored, read with mutagen's page tools and a parser of our own."""
    from mutagen.ogg import OggPage

    with open(p, "rb") as fh:
        if p.suffix == ".flac":  # the blocks as stored (mutagen's own would re-serialise)
            raw = fh.read()
            pos = raw.index(b"fLaC") + 4
            while raw[pos] & 0x7F != 4:
                pos += 4 + int.from_bytes(raw[pos + 1:pos + 4], "big")
            data = raw[pos + 4:pos + 4 + int.from_bytes(raw[pos + 1:pos + 4], "big")]
        else:
            pages = [OggPage(fh) for _ in range(6)]
            first, packet = OggPage.to_packets(pages, strict=False)[:2]
            data = (packet[7:] if packet.startswith(b"\x03vorbis")
                    else packet[8:] if packet.startswith(b"OpusTags")
                    else packet[4:] if first.startswith(b"\x7fFLAC")  # a FLAC block in Ogg
                    else packet)  # Speex: the comments, bare
    pos = 4 + int.from_bytes(data[:4], "little")
    count, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
    out = []
    for _ in range(count):
        n, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        out.append(data[pos:pos + n])
        pos += n
    return out


OLD_ENCODERS = [b"TITLE=Song", b"Sonic Foundry OggVorbis Beta 3", b"COMMENT=\x83e\x83X\x83g",
                b"GENRE=Old", b"ARTIST=Someone"]


@pytest.mark.parametrize("name", ["flac", "ogg", "opus", "speex", "ogg-flac"])
def test_comments_mutagen_would_rewrite_are_kept_byte_for_byte(originals: dict[str, Path],
                                                              tmp_path: Path, name: str) -> None:
    """A bare comment without '=' and a Shift-JIS value (seen on 7 of 120 real Ogg/Opus/MP3
    tracks of the corpus): tagged, every other entry byte for byte in its place."""
    from tagfiles import stream_md5

    p = copy_in({name: originals[name]}, tmp_path)[name]
    _set_raw_comments(p, OLD_ENCODERS)
    audio = stream_md5(p, "0:a:0")
    write_genres(p, GENRES)
    assert read_genres(p) == GENRES
    assert _raw_entries(p) == [b"TITLE=Song", b"Sonic Foundry OggVorbis Beta 3",
                               b"COMMENT=\x83e\x83X\x83g", b"GENRE=Electronic", b"GENRE=Ambient",
                               b"ARTIST=Someone"]
    assert stream_md5(p, "0:a:0") == audio
    write_genres(p, [])  # and removed again
    assert _raw_entries(p) == [e for e in OLD_ENCODERS if not e.startswith(b"GENRE=")]


def test_a_comment_block_whose_lengths_do_not_hold_is_refused(originals: dict[str, Path],
                                                               tmp_path: Path) -> None:
    p = copy_in({"ogg": originals["ogg"]}, tmp_path)["ogg"]
    _set_raw_comments(p, [b"TITLE=Song", b"no equals sign"], count=9)  # 9 said, 2 there
    data = p.read_bytes()
    with pytest.raises(TagError) as e:
        write_genres(p, GENRES)
    assert e.value.code in ("unsafe-rewrite", "bad-tags") and "damaged" in e.value.reason
    assert p.read_bytes() == data


def test_an_id3_frame_mutagen_would_shorten_is_kept_as_stored(tmp_path: Path) -> None:
    """ffmpeg stores a date with seconds and zone (TDRC 2000-01-04T21:57:33Z, seen twice in
    the corpus); mutagen's timestamp keeps minutes only, so the file used to be refused."""
    from conftest import ffmpeg_encode, music_like
    from tagfiles import ffprobe, stream_md5

    p = ffmpeg_encode(music_like(4.0), 44_100, tmp_path / "dated.mp3",
                      ["-c:a", "libmp3lame", "-q:a", "6", "-id3v2_version", "4",
                       "-metadata", "date=2000-01-04T21:57:33Z", "-metadata", "title=Dated"])
    audio = stream_md5(p, "0:a:0")
    write_genres(p, GENRES)
    assert read_genres(p) == GENRES and stream_md5(p, "0:a:0") == audio
    tags = {k.lower(): v for k, v in ffprobe(p)["format"]["tags"].items()}
    assert tags["date"] == "2000-01-04T21:57:33Z" and tags["title"] == "Dated"
