"""Data safety: a person's file is never cut, damaged or mislabelled, whatever happens around it.

Real encoded files, real processes: writers that hold files open, processes SIGKILLed at each
step of the write path (``GENRE_TAGGER_FAULT``), damaged containers, symlinks, a file that
changes after it was analysed, and the daemon with copies paused mid-way or killed mid-copy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import mutagen
import pytest
from scanning import LOW_BAR as SEL
from tagfiles import make_tagged, stream_md5
from test_daemon import Daemon, _no_daemon_left_behind, query, tagged, wait_until  # noqa: F401

from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Engine
from tagger.cache import Cache
from tagger.errors import TagError
from tagger.faults import CHECKPOINTS
from tagger.formats.identity import audio_identity, trusted
from tagger.library.pipeline import Scanner, ScanOptions
from tagger.library.walk import walk
from tagger.tags import read_genres, write_genres
from tagger.tags.safe_write import YOUNG_SECONDS, _writers_in_proc, being_written, is_temp_name

REPO = Path(__file__).resolve().parent.parent


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3", **extra)


# --- damaged containers: refused, byte-identical, the reason named --------------------------------


def wav_truncated(d: Path) -> Path:
    p = make_tagged(d, "wav")
    data = p.read_bytes()
    p.write_bytes(data[:len(data) - 20_000])  # the data chunk now claims more than the file has
    return p


def id3_with_footer(d: Path) -> Path:
    p = make_tagged(d, "mp3-v24")
    b = bytearray(p.read_bytes())
    size = (b[6] << 21) | (b[7] << 14) | (b[8] << 7) | b[9]
    b[5] |= 0x10
    b[10 + size:10 + size] = b"3DI" + bytes(b[3:10])
    p.write_bytes(bytes(b))
    return p


def comment_without_equals(name: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = make_tagged(d, name)
        f = mutagen.File(p)
        f["xyzzy"] = "plugh"
        f.save()
        data = p.read_bytes()
        key = b"xyzzy=plugh" if b"xyzzy=plugh" in data else b"XYZZY=plugh"
        p.write_bytes(data.replace(key, key.replace(b"=", b"_")))
        return p
    return make


def broken_apic(d: Path) -> Path:
    p = make_tagged(d, "mp3-v24")
    b = bytearray(p.read_bytes())
    b[b.find(b"APIC") + 10] = 9  # no such text encoding: mutagen would drop the frame
    p.write_bytes(bytes(b))
    return p


def broken_ilst_item(d: Path) -> Path:
    p = make_tagged(d, "m4a")
    b = bytearray(p.read_bytes())
    i = b.find(b"trkn")
    b[i + 8:i + 12] = b"dat!"  # the track number's data atom, renamed: mutagen cannot parse it
    p.write_bytes(bytes(b))
    return p


def wav_info_entry_size(d: Path) -> Path:
    p = make_tagged(d, "wav")
    b = bytearray(p.read_bytes())
    b[b.find(b"IART") + 4] += 2  # the artist's size swallows the next entry's header
    p.write_bytes(bytes(b))
    return p


def id3_text_says_utf16(d: Path) -> Path:
    p = make_tagged(d, "mp3-v24")
    b = bytearray(p.read_bytes())
    b[b.find(b"TIT2") + 10] = 1  # UTF-8 bytes declared as UTF-16: mutagen reads garbage
    p.write_bytes(bytes(b))
    return p


def container_size(name: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        p = make_tagged(d, name)
        b = bytearray(p.read_bytes())
        b[4:8] = b"\xff\xff\xff\xff"  # RIFF / FORM size at its maximum: mutagen cannot write it
        p.write_bytes(bytes(b))
        return p
    return make


DAMAGED = {
    "wav-data-chunk-overruns": (wav_truncated, "the file is truncated (a chunk runs past its "
                                               "end), so a new tag would land inside the audio"),
    "id3-footer": (id3_with_footer, "its ID3 tag has a footer, which mutagen does not rewrite"),
    "broken-apic": (broken_apic, "the ID3 frame APIC is damaged and would be lost"),
    "broken-ilst-item": (broken_ilst_item, "the MP4 metadata item 'trkn' is damaged and would be "
                                           "rewritten"),
    "wav-info-entry-size": (wav_info_entry_size, "the WAV INFO list is damaged (its entry sizes do "
                                                 "not add up) and would be rewritten"),
    "riff-size-max": (container_size("wav"), "mutagen cannot write them back (a size or type field "
                                             "in the tag is out of range)"),
    "form-size-max": (container_size("aiff"), "mutagen cannot write them back (a size or type field "
                                              "in the tag is out of range)"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_file_whose_tags_cannot_be_rewritten_faithfully_is_left_byte_identical(
        tmp_path: Path, case: str) -> None:
    make, reason = DAMAGED[case]
    path = make(tmp_path)
    before = sha(path)
    with pytest.raises(TagError) as e:
        write_genres(path, ["Rock"])
    assert e.value.code == "unsafe-rewrite"
    assert e.value.reason == "cannot safely rewrite the tags: " + reason
    assert sha(path) == before
    assert not [p for p in tmp_path.iterdir() if is_temp_name(p.name)]


#: Refused until mutagen's rewrite was bypassed for them: now tagged, the odd bytes kept.
KEPT_AS_STORED: dict[str, tuple[Callable[[Path], Path], bytes]] = {
    "flac-comment-without-equals": (comment_without_equals("flac"), b"xyzzy_plugh"),
    "ogg-comment-without-equals": (comment_without_equals("ogg"), b"xyzzy_plugh"),
    "opus-comment-without-equals": (comment_without_equals("opus"), b"xyzzy_plugh"),
    "id3-text-encoding": (id3_text_says_utf16, b"TIT2"),
}


@pytest.mark.parametrize("case", list(KEPT_AS_STORED))
def test_tags_mutagen_would_rewrite_are_now_kept_as_stored(tmp_path: Path, case: str) -> None:
    make, marker = KEPT_AS_STORED[case]
    path = make(tmp_path)
    data = path.read_bytes()
    at = data.find(marker)
    if marker == b"TIT2":  # the whole frame: header and its (small, so plain) size of data
        odd = data[at:at + 10 + int.from_bytes(data[at + 4:at + 8], "big")]
    else:  # the whole comment entry: its length, then the entry
        odd = data[at - 4:at + len(marker)]
    write_genres(path, ["Rock"])
    assert read_genres(path) == ["Rock"]
    assert odd in path.read_bytes()


def test_the_scan_records_the_refusal_with_its_reason(tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    path = broken_apic(lib)
    before = sha(path)
    with Cache(f"sqlite:///{tmp_path / 'c.sqlite'}") as cache:
        report = Scanner(ScanOptions(roots=(str(lib),)), engine.config, cache, engine).run()
        row = cache.get(str(path))
    assert [(o.error, o.reason) for o in report.outcomes] == [
        ("unsafe-rewrite", "cannot safely rewrite the tags: the ID3 frame APIC is damaged and would be lost")]
    assert row is not None and row.status == "failed" and row.error_code == "unsafe-rewrite"
    assert sha(path) == before


# --- writers, changes, symlinks, temporary copies ----------------------------------------------------

HOLD_OPEN = "import sys, time; f = open(sys.argv[1], 'r+b'); print('open', flush=True); time.sleep(60)"


def test_a_file_open_for_writing_elsewhere_is_never_replaced(tmp_path: Path) -> None:
    path = make_tagged(tmp_path, "ogg")
    before = sha(path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"open"
        assert being_written(path)
        assert holder.pid in _writers_in_proc(os.stat(path))  # the fallback sees it too
        with pytest.raises(TagError) as e:
            write_genres(path, ["Rock"])
        assert (e.value.code, e.value.reason) == (
            "busy", "another program is still writing the file; left for later")
        assert sha(path) == before
    finally:
        holder.kill()
        holder.wait()
    assert not being_written(path)
    write_genres(path, ["Rock"])
    assert read_genres(path) == ["Rock"]


def test_a_file_changed_since_it_was_analysed_is_not_written(tmp_path: Path) -> None:
    path = make_tagged(tmp_path, "flac")
    analysed = os.stat(path)
    with open(path, "r+b") as fh:  # cut, as a copy restarted over it would
        fh.truncate(analysed.st_size // 2)
    cut = sha(path)
    with pytest.raises(TagError) as e:
        write_genres(path, ["Rock"], expect=analysed)
    assert (e.value.code, e.value.reason) == (
        "changed", "the file changed while it was being tagged; left for next time")
    assert sha(path) == cut


class CutAfterAnalysis(Engine):
    """The real engine; as each result comes out, the file is cut (a copy restarting over it)."""

    def predict_paths(self, paths):  # type: ignore[no-untyped-def]
        for result in super().predict_paths(paths):
            data = Path(result.path).read_bytes()
            Path(result.path).write_bytes(data[:len(data) * 2 // 3])
            yield result


def test_a_file_cut_after_its_analysis_is_not_tagged_with_it(tmp_path: Path) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    path = make_tagged(lib, "ogg", seconds=12.0)
    cutter = CutAfterAnalysis(EngineConfig(device="cpu", selection=SEL))
    with Cache(f"sqlite:///{tmp_path / 'c.sqlite'}") as cache:
        report = Scanner(ScanOptions(roots=(str(lib),)), cutter.config, cache, cutter).run()
        assert [(o.error, o.reason) for o in report.outcomes] == [
            ("changed", "the file changed while it was being tagged; left for next time")]
        assert read_genres(path) == []  # not tagged with the analysis of the whole file
        row = cache.get(str(path))
        assert row is not None and row.size != os.stat(path).st_size  # not "known" at its new size
        again = Scanner(ScanOptions(roots=(str(lib),)), cutter.config, cache).run()
    assert again.counts["unchanged"] == 0  # looked at anew: analysed, or reported as truncated
    assert again.counts["analysed"] + again.failures["truncated"] == 1


def test_a_symlink_inside_the_library_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = make_tagged(tmp_path / "real", "mp3-v24")
    link = tmp_path / "link.mp3"
    link.symlink_to(target)
    write_genres(link, ["Jazz"])
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert read_genres(target) == ["Jazz"]


def test_a_link_to_a_file_in_the_library_settles_in_one_scan(tmp_path: Path, engine: Engine) -> None:
    (tmp_path / "album").mkdir()
    real = make_tagged(tmp_path / "album", "ogg")
    (tmp_path / "alias.ogg").symlink_to(real)
    with Cache(f"sqlite:///{tmp_path / 'c.sqlite'}") as cache:
        first = Scanner(ScanOptions(roots=(str(tmp_path),)), engine.config, cache, engine).run()
        again = Scanner(ScanOptions(roots=(str(tmp_path),)), engine.config, cache, engine).run()
    assert len(first.outcomes) == 2 and first.counts["tagged"] == 1  # each name has its outcome
    assert again.counts["unchanged"] == 2 and not again.outcomes  # and the rescan is quiet
    assert (tmp_path / "alias.ogg").is_symlink() and read_genres(real)


def test_any_name_that_fits_can_be_tagged(tmp_path: Path) -> None:
    src = make_tagged(tmp_path, "flac")
    long = tmp_path / ("x" * 250 + ".flac")  # 255 bytes: the longest name ext4 allows
    src.rename(long)
    write_genres(long, ["Folk"])
    assert read_genres(long) == ["Folk"]


KILLED_AFTER_TEMP = """
import os, sys
os.environ["GENRE_TAGGER_FAULT"] = "after-temp-write"
from tagger.tags import write_genres
write_genres(sys.argv[1], ["Rock"])
"""
HOLD_TEMP = """
import sys, time
from pathlib import Path
from tagger.tags.safe_write import locked_temp
with locked_temp(Path(sys.argv[1])) as copy:
    print(Path(sys.argv[1]) / copy.name, flush=True)
    time.sleep(60)
"""


def test_a_dead_writers_copy_is_removed_at_once_a_live_ones_never(tmp_path: Path) -> None:
    path = make_tagged(tmp_path, "flac")
    rc = subprocess.run([sys.executable, "-c", KILLED_AFTER_TEMP, str(path)], env=env()).returncode
    assert rc == -signal.SIGKILL
    dead = [p for p in tmp_path.iterdir() if is_temp_name(p.name)]
    assert len(dead) == 1 and len(dead[0].name) == 30
    assert read_genres(path) == []  # killed before the rename: the original is as it was
    live = subprocess.Popen([sys.executable, "-c", HOLD_TEMP, str(tmp_path)], env=env(),
                            stdout=subprocess.PIPE)
    try:
        assert live.stdout is not None
        held = Path(live.stdout.readline().decode().strip())
        os.utime(held, (0, 0))  # its mtime says "old", but its writer lives
        time.sleep(YOUNG_SECONDS + 0.1)  # the moment between creating and locking a copy
        list(walk([tmp_path]))  # every walk cleans up (scan, the daemon's reconcile)
        assert not dead[0].exists()  # the dead writer's copy: gone, without a 10-minute wait
        assert held.exists()  # the live one: kept
    finally:
        live.kill()
        live.wait()


# --- audio identities that say nothing are never shared ------------------------------------------


def mp3_with_bogus_ape_footer(d: Path, name: str, seed: int) -> Path:
    from conftest import ffmpeg_encode, music_like

    p = ffmpeg_encode(music_like(5.0, seed=seed) * (0.5 + seed / 10), 44_100, d / name,
                      ["-c:a", "libmp3lame", "-q:a", "6"])
    footer = b"APETAGEX" + (2000).to_bytes(4, "little") + (10 ** 9).to_bytes(4, "little") \
        + (0).to_bytes(4, "little") + (1 << 31).to_bytes(4, "little") + bytes(8)
    p.write_bytes(p.read_bytes() + footer)
    return p


def test_files_whose_audio_cannot_be_located_never_share_an_analysis(tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    a = mp3_with_bogus_ape_footer(lib, "a.mp3", 1)
    b = mp3_with_bogus_ape_footer(lib, "b.mp3", 7)
    ida, idb = audio_identity(a), audio_identity(b)
    assert ida != idb and ida.startswith("file:") and trusted(ida)
    with Cache(f"sqlite:///{tmp_path / 'c.sqlite'}") as cache:
        cache.upsert(str(lib / "old.mp3"), audio_id="mpeg:" + hashlib.sha256(b"").hexdigest(),
                     status="done", model_version=engine.model.version,
                     genre_scores={"Opera": 0.99}, raw_scores={})  # an empty-payload row of 0.1
        report = Scanner(ScanOptions(roots=(str(lib),), dry_run=True), engine.config, cache,
                         engine).run()
        assert report.counts["analysed"] == 2 and report.counts["reused"] == 0
        assert cache.get(str(a)).genre_scores != cache.get(str(b)).genre_scores  # type: ignore[union-attr]


# --- SIGKILL at each step of the write path ----------------------------------------------------------

ORIGINAL = {"flac": [], "mp3-v24": ["Blues"], "m4a": [], "ogg": ["Jazz", "Soul"]}


@pytest.mark.parametrize("fault", CHECKPOINTS)
def test_a_kill_at_any_step_loses_nothing_and_revert_restores_every_original(
        tmp_path: Path, engine: Engine, fault: str) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    files = {name: make_tagged(lib, name, genre="; ".join(g) if name == "mp3-v24" else None)
             for name, g in ORIGINAL.items()}
    f = mutagen.File(files["ogg"])
    f["genre"] = ORIGINAL["ogg"]
    f.save()
    assert {n: read_genres(p) for n, p in files.items()} == ORIGINAL
    audio = {n: stream_md5(p, "0:a:0") for n, p in files.items()}
    db = tmp_path / "c.sqlite"
    with Cache(f"sqlite:///{db}") as cache:  # analyse first, so the killed runs only decide and write
        dry = Scanner(ScanOptions(roots=(str(lib),), policy="overwrite", dry_run=True),
                      engine.config, cache, engine).run()
    ours = {Path(o.path).name: o.new for o in dry.outcomes}
    assert all(ours.values())
    cmd = [sys.executable, "-m", "tagger", "scan", str(lib), "--db", f"sqlite:///{db}",
           "--policy", "overwrite", "--min-confidence", "0.01", "--device", "cpu"]
    kills = 0
    for _ in range(len(files) + 2):
        rc = subprocess.run(cmd, env=env(GENRE_TAGGER_FAULT=fault), capture_output=True).returncode
        for name, p in files.items():  # after every kill: each file old or new, audio untouched
            assert read_genres(p) in (ORIGINAL[name], ours[p.name]), (fault, name)
            assert stream_md5(p, "0:a:0") == audio[name]
        if rc != -signal.SIGKILL:
            assert rc == 0
            break
        kills += 1
        if fault in ("after-intent", "after-temp-write"):  # no write can get past this fault
            assert subprocess.run(cmd, env=env(), capture_output=True).returncode == 0
            break
    assert kills >= 1
    assert {p.name: read_genres(p) for p in files.values()} == ours
    with Cache(f"sqlite:///{db}") as cache:
        assert not cache.intents()
        again = Scanner(ScanOptions(roots=(str(lib),), policy="missing"), engine.config, cache,
                        engine).run()
    # No write of ours is taken for a person's edit (that would read as has-genre or keep-user).
    assert again.counts["left:same"] == len(files), again.counts
    out = subprocess.run([sys.executable, "-m", "tagger", "revert", str(lib), "--db", f"sqlite:///{db}"],
                         env=env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert {n: read_genres(p) for n, p in files.items()} == ORIGINAL  # every original is back
    assert all(stream_md5(p, "0:a:0") == audio[n] for n, p in files.items())
    assert query(db, "SELECT count(*) FROM tracks WHERE genres_written IS NOT NULL") == [(0,)]


# --- the daemon and copies in progress ---------------------------------------------------------------


def copy_with_pause(src: Path, dest: Path, pause: float, started: threading.Event | None = None) -> None:
    data = src.read_bytes()
    half = len(data) // 2
    with open(dest, "wb") as fh:
        fh.write(data[:half])
        fh.flush()
        if started:
            started.set()
        time.sleep(pause)
        fh.write(data[half:])


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sources")
    from conftest import ffmpeg_encode, music_like

    files = {name: make_tagged(d, name, seconds=15.0) for name in ("ogg", "opus", "flac", "mp3-v24")}
    # An MP3 without a Xing header does not declare its length: half of it decodes as a whole
    # song, so only the writer check stands between it and a cut file.
    files["mp3-no-xing"] = ffmpeg_encode(music_like(15.0, seed=3), 44_100, d / "no-xing.mp3",
                                         ["-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0"])
    return files


def test_a_copy_paused_mid_way_is_never_cut(tmp_path: Path, sources: dict[str, Path]) -> None:
    root = tmp_path / "music"
    root.mkdir()
    db, log = tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    d = Daemon(root, db, log)
    shutil.copy(sources["flac"], root / sources["flac"].name)  # warm up: the model is loaded
    assert wait_until(lambda: len(tagged(db)) == 1, 120), log.read_text()[-3000:]
    copies = [threading.Thread(target=copy_with_pause, args=(sources[n], root / sources[n].name, 10.0))
              for n in ("ogg", "opus", "mp3-no-xing")]
    for t in copies:
        t.start()
    for t in copies:
        t.join()
    for n in ("ogg", "opus", "mp3-no-xing"):  # the whole file arrived: every byte copied
        assert audio_identity(root / sources[n].name) == audio_identity(sources[n])
    assert wait_until(lambda: len(tagged(db)) == 4, 120), log.read_text()[-3000:]
    assert d.stop() == 0
    rows = {Path(p).name: (n, a) for p, n, a in query(db, "SELECT path, analyses, audio_id FROM tracks")}
    for n in ("ogg", "opus", "mp3-no-xing"):
        dest = root / sources[n].name
        assert read_genres(dest)
        assert stream_md5(dest, "0:a:0") == stream_md5(sources[n], "0:a:0")
        assert rows[dest.name] == (1, audio_identity(sources[n]))  # analysed once, complete


def test_a_daemon_killed_and_restarted_mid_copy_cuts_nothing(tmp_path: Path,
                                                              sources: dict[str, Path]) -> None:
    root = tmp_path / "music"
    root.mkdir()
    db, log = tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    first = Daemon(root, db, log)
    started = [threading.Event() for _ in sources]
    copies = [threading.Thread(target=copy_with_pause, args=(src, root / src.name, 6.0, ev))
              for src, ev in zip(sources.values(), started)]
    for t in copies:
        t.start()
    for ev in started:
        ev.wait(10)
    time.sleep(1.0)
    first.stop(signal.SIGKILL)
    second = Daemon(root, db, log)  # reconciles while the copies are still paused
    for t in copies:
        t.join()
    assert wait_until(lambda: len(tagged(db)) == len(sources), 120), log.read_text()[-3000:]
    assert second.stop() == 0
    analyses = dict((Path(p).name, n) for p, n in query(db, "SELECT path, analyses FROM tracks"))
    for src in sources.values():
        dest = root / src.name
        assert audio_identity(dest) == audio_identity(src)
        assert stream_md5(dest, "0:a:0") == stream_md5(src, "0:a:0")
        assert read_genres(dest) and analyses[dest.name] == 1


def test_temporary_copies_are_hidden_from_the_walk(tmp_path: Path) -> None:
    path = make_tagged(tmp_path, "flac")
    shutil.copy2(path, tmp_path / ".genre-tagger-0123456789ab.tmp")
    assert [Path(p).name for p, _ in walk([tmp_path], clean_temps=False)] == ["flac.flac"]
