"""Watching a library as home servers have them (issue 22): signal bursts, polling mounts whose
inode numbers come back, the inotify limit, a cache lost under the daemon, a second process.
Real daemon subprocesses, real mounts, real files."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemons import REPO, Daemon, no_daemon_left_behind, query, tagged, wait_until, wav_bytes

from tagger.formats.identity import audio_identity
from tagger.tags import read_genres, write_genres

CLI = [sys.executable, "-m", "tagger"]
ENV = dict(os.environ, PYTHONPATH=str(REPO), GENRE_TAGGER_MIN_CONFIDENCE="0.01")


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    yield from no_daemon_left_behind()


def _caught(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def _handlers_installed(pid: int) -> bool:
    """SIGTERM and SIGHUP are caught (Python catches SIGINT from the start)."""
    try:
        mask = _caught(pid)
    except OSError:
        return False
    return all(mask & (1 << (s - 1)) for s in (signal.SIGTERM, signal.SIGHUP))


def _burst(pid: int, n: int, rng: random.Random, kinds: tuple[signal.Signals, ...]) -> None:
    for _ in range(n):
        try:
            os.kill(pid, rng.choice(kinds))
        except ProcessLookupError:
            return
        time.sleep(rng.random() / 500)


ALL = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@pytest.mark.parametrize("phase", ["start", "batch", "stop"])
def test_signal_bursts_at_every_phase_end_in_a_clean_stop(tmp_path: Path, phase: str) -> None:
    """Hundreds of SIGTERM, SIGINT and SIGHUP, microseconds apart: during the start-up (cache,
    observers, reconciliation, model), mid-batch (analysing and writing: SIGHUPs alone first,
    and the daemon must go on tagging), and while it stops. It always exits 0 within the
    bound, leaving every file whole (its audio, its genres ours or none) and no copy behind."""
    root = tmp_path / "music"
    root.mkdir()
    files = [root / f"t{i:02d}.wav" for i in range(16)]
    for i, f in enumerate(files):
        f.write_bytes(wav_bytes(7000 + i, seconds=6))
    audio = {f: audio_identity(f) for f in files}
    db, log = tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    rng = random.Random(phase)
    d = Daemon(root, db, log, "--log-level", "info", wait=False)
    pid = d.proc.pid
    assert wait_until(lambda: _handlers_installed(pid) or d.proc.poll() is not None, 60)
    if phase != "start":
        assert wait_until(lambda: len(tagged(db)) >= 1, 120), log.read_text()
    if phase == "batch":
        _burst(pid, 200, rng, (signal.SIGHUP,))
        n = len(tagged(db))
        assert wait_until(lambda: len(tagged(db)) > n, 120), log.read_text()[-3000:]
        assert d.proc.poll() is None
    if phase == "stop":
        os.kill(pid, signal.SIGTERM)
    _burst(pid, 300, rng, ALL)
    os.kill(pid, signal.SIGTERM) if d.proc.poll() is None else None
    try:
        rc = d.proc.wait(timeout=120)
    except Exception:
        pytest.fail(f"hung after the signals:\n{log.read_text()[-3000:]}")
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert "stopped;" in text
    for f in files:
        assert audio_identity(f) == audio[f], f
        read_genres(f)  # its tags whole
    assert not [p for p in root.iterdir() if p.name.startswith(".genre-tagger")]


# --- polling mounts whose inode numbers come back -------------------------------------------------


@pytest.fixture(params=["bindfs", "ext4"])
def polled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A folder the daemon must poll: through bindfs (FUSE), or plain ext4 (polling forced)."""
    if request.param == "ext4":
        yield tmp_path / "music"
        return
    if shutil.which("bindfs") is None or not os.path.exists("/dev/fuse"):
        pytest.skip("bindfs and /dev/fuse are needed (apt install bindfs)")
    backing, mount = tmp_path / "backing", tmp_path / "music"
    backing.mkdir()
    mount.mkdir()
    subprocess.run(["bindfs", str(backing), str(mount)], check=True, capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["fusermount", "-u", str(mount)], capture_output=True)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_polling_keeps_every_files_history_and_never_sees_its_own_writes(
        polled: Path, tmp_path: Path) -> None:
    """Policy overwrite, 16 files (5 with their own genres), half there at start and half
    copied in while it runs, polled every 0.3 s: each file is analysed and tagged once, no
    move or deletion is reported (none happened: every one would be our own rename, or an
    inode number taken again), and revert then restores every original, none called a
    person's edit."""
    root = polled
    root.mkdir(exist_ok=True)
    own = {i: [f"Own {i}"] for i in (0, 3, 8, 11, 14)}
    staged = tmp_path / "staged"
    staged.mkdir()
    files = []
    for i in range(16):
        f = staged / f"t{i:02d}.wav"
        f.write_bytes(wav_bytes(8000 + i))
        if i in own:
            write_genres(f, own[i])
        files.append(root / f.name)
    for f in files[:8]:
        shutil.copyfile(staged / f.name, f)
    audio = {f: audio_identity(staged / f.name) for f in files}
    db, log = tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    d = Daemon(root, db, log, "--observer", "polling", "--policy", "overwrite",
               "--log-level", "info", env={"GENRE_TAGGER_POLL_SECONDS": "0.3"})
    for f in files[8:]:
        shutil.copyfile(staged / f.name, f)
    every = {str(f) for f in files}
    assert wait_until(lambda: set(tagged(db)) == every, 180), log.read_text()[-3000:]
    time.sleep(4)  # a dozen polls: our renames would come back now
    assert d.stop() == 0
    text = log.read_text()
    false = [line for line in text.splitlines() if re.search(r"\bINFO (moved|deleted) ", line)]
    assert not false, false
    assert set(tagged(db).values()) == {1}, tagged(db)  # once each
    for f in files:
        assert audio_identity(f) == audio[f] and read_genres(f), f
    out = subprocess.run([*CLI, "revert", "--db", f"sqlite:///{db}", str(root)], env=ENV,
                         capture_output=True, text=True)
    assert out.returncode == 0 and "reverted 16 files, skipped 0" in out.stderr, out.stderr
    for i, f in enumerate(files):
        assert read_genres(f) == own.get(i, []), f


# --- more folders than inotify has watches --------------------------------------------------------


def _limited(watches: int) -> tuple[str, ...]:
    """A command prefix running the daemon in a user namespace whose inotify watch limit is
    ``watches`` (the system's own limit is left alone)."""
    probe = subprocess.run(["unshare", "-U", "-r", "true"], capture_output=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip("user namespaces are needed (unshare -U -r)")
    return ("unshare", "-U", "-r", "sh", "-c",
            f'echo {watches} > /proc/sys/user/max_inotify_watches && exec "$@"', "sh")


def _status(db: Path) -> dict:  # type: ignore[type-arg]
    import json

    out = subprocess.run([*CLI, "status", "--json", "--db", f"sqlite:///{db}"], env=ENV,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_more_folders_than_inotify_watches_at_start_are_polled(tmp_path: Path) -> None:
    """30 folders, 12 watches: the daemon starts (it exited with a traceback: under systemd a
    restart loop that tagged nothing), says once which setting to raise and to what, and tags
    a file copied into the deepest folder and one into a folder made after start."""
    root = tmp_path / "music"
    deepest = root
    for i in range(10):
        deepest = deepest / f"level{i}"
        for j in range(2):
            (deepest / f"side{j}").mkdir(parents=True)
    db, log = tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    d = Daemon(root, db, log, "--log-level", "info", prefix=_limited(12),
               env={"GENRE_TAGGER_POLL_SECONDS": "0.5"})
    (deepest / "deep.wav").write_bytes(wav_bytes(9100))
    (root / "later" / "cd1").mkdir(parents=True)
    (root / "later" / "cd1" / "late.wav").write_bytes(wav_bytes(9101))
    want = {str(deepest / "deep.wav"), str(root / "later" / "cd1" / "late.wav")}
    assert wait_until(lambda: set(tagged(db)) >= want, 120), log.read_text()[-3000:]
    watched = _status(db)["daemons"][0]["watched"]
    assert d.stop() == 0
    text = log.read_text()
    assert "Traceback" not in text, text
    assert text.count("inotify cannot watch") == 1, text
    assert "sysctl fs.inotify.max_user_watches=" in text and "31 here" in text, text
    assert watched["polling"] >= 31 and watched["inotify"] == 0, watched


def test_folders_made_after_inotify_ran_out_are_polled(tmp_path: Path) -> None:
    """Watches for the folders there at start and a few more: twelve folders made while it
    runs, each with a file copied in at once. watchdog leaves those it has no watch for
    unwatched (a file copied there was never tagged and status said queue 0); now each is
    polled, looked at once for what arrived before, and every file is tagged once."""
    root = tmp_path / "music"
    for i in range(3):
        (root / f"old{i}").mkdir(parents=True)
    db, log = tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    d = Daemon(root, db, log, "--log-level", "info", prefix=_limited(8),
               env={"GENRE_TAGGER_POLL_SECONDS": "0.5"})
    want = set()
    for i in range(12):
        folder = root / f"new{i:02d}"
        folder.mkdir()
        (folder / "t.wav").write_bytes(wav_bytes(9200 + i))
        want.add(str(folder / "t.wav"))
    assert wait_until(lambda: set(tagged(db)) >= want, 120), log.read_text()[-3000:]
    watched = _status(db)["daemons"][0]["watched"]
    time.sleep(2)  # pollers running: nothing comes back
    assert d.stop() == 0
    text = log.read_text()
    assert "Traceback" not in text and "Unable to watch" not in text, text
    assert text.count("sysctl fs.inotify.max_user_watches=") == 1, text
    assert set(tagged(db).values()) == {1}, tagged(db)
    assert watched["polling"] >= 1 and watched["inotify"] >= 4, watched


# --- the cache lost under a running daemon --------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "overwritten"])
def test_a_cache_lost_under_the_daemon_stops_it_before_any_unrecorded_write(
        tmp_path: Path, how: str) -> None:
    """Deleted (rm) or overwritten with random bytes while the daemon runs and files keep
    arriving: it stops, says why in plain words, exits 75 (systemd starts it again), and no
    file arriving after the loss gets a genre it could not record. Started again, it begins a
    new cache (a damaged one is moved aside, kept) and tags them."""
    root = tmp_path / "music"
    root.mkdir()
    db, log = tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    for i in range(3):
        (root / f"a{i}.wav").write_bytes(wav_bytes(9000 + i))
    d = Daemon(root, db, log)
    assert wait_until(lambda: len(tagged(db)) == 3, 120), log.read_text()
    if how == "deleted":
        db.unlink()
    else:
        db.write_bytes(os.urandom(db.stat().st_size))
    late = [root / f"b{i}.wav" for i in range(4)]
    for i, f in enumerate(late):
        f.write_bytes(wav_bytes(9100 + i))
    rc = d.proc.wait(timeout=90)
    text = log.read_text()
    assert rc == 75, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert f"was {how}" in text and "cannot be undone by 'revert'" in text, text[-2000:]
    assert all(read_genres(f) == [] for f in late)
    status = subprocess.run([*CLI, "status", "--db", f"sqlite:///{db}"], env=ENV,
                            capture_output=True, text=True)
    assert "Traceback" not in status.stdout + status.stderr
    if how == "deleted":
        assert not db.exists()  # status created nothing
    d = Daemon(root, db, tmp_path / "again.log")
    assert wait_until(lambda: all(read_genres(f) for f in late), 120), \
        (tmp_path / "again.log").read_text()
    assert d.stop() == 0
    # Overwritten, the first run's own log (WAL), replayed when it closed, may make the file
    # whole again (then its history goes on); else it was moved aside at the start. Either
    # way the cache in use checks whole.
    assert query(db, "PRAGMA quick_check") == [("ok",)]


def test_a_damaged_cache_at_start_is_moved_aside_and_a_new_one_begins(tmp_path: Path) -> None:
    """Not a restart loop that tags nothing (systemd): the damaged file is kept beside, named
    for the day, and the log says what that costs."""
    root = tmp_path / "music"
    root.mkdir()
    (root / "a.wav").write_bytes(wav_bytes(9200))
    db, log = tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    junk = os.urandom(64 * 1024)
    db.write_bytes(junk)
    d = Daemon(root, db, log)
    assert wait_until(lambda: len(tagged(db)) == 1, 120), log.read_text()
    assert d.stop() == 0
    aside = list(tmp_path.glob("cache.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == junk
    assert "moved aside" in log.read_text() and "Traceback" not in log.read_text()


# --- a second process on the same library and cache ----------------------------------------------


def _library(root: Path, n: int, seed: int) -> set[str]:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"t{i:02d}.wav").write_bytes(wav_bytes(seed + i))
    return {str(root / f"t{i:02d}.wav") for i in range(n)}


def _scan(root: Path, db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, "scan", str(root), "--db", f"sqlite:///{db}", "--device", "cpu"],
                            env=dict(ENV, TF_CPP_MIN_LOG_LEVEL="3"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _analysed(stderr: str) -> int:
    found = re.search(r"(\d+) analysed,", stderr)
    assert found, stderr
    return int(found.group(1))


def test_two_scans_at_once_share_the_work(tmp_path: Path) -> None:
    """Two scans of one library and cache started together: each file is analysed once (it
    was 80 analyses for 40 files), both end 0 with no failure (both ended 1 with false
    'changed'/'busy' for files the other had tagged), and between them every file is tagged."""
    root, db = tmp_path / "music", tmp_path / "cache.sqlite"
    files = _library(root, 16, 9300)
    first, second = _scan(root, db), _scan(root, db)
    outs = [p.communicate(timeout=600) for p in (first, second)]
    errs = [e for _, e in outs]
    assert first.returncode == 0 and second.returncode == 0, errs
    assert all("failed: none" in e for e in errs), errs
    assert sum(_analysed(e) for e in errs) == 16, errs
    assert set(tagged(db)) == files and set(tagged(db).values()) == {1}, tagged(db)
    assert query(db, "SELECT count(*) FROM queue") == [(0,)]  # nothing left behind


def test_a_scan_beside_the_daemon_shares_the_work(tmp_path: Path) -> None:
    """Files arrive while the daemon runs and a scan of the same library starts at once: no
    file is analysed by both (it was 72 analyses for 40), the scan ends 0 without failures,
    and the daemon logs none."""
    root, db, log = tmp_path / "music", tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    root.mkdir()
    d = Daemon(root, db, log, "--log-level", "info")
    files = _library(root, 16, 9400)
    time.sleep(1.5)  # settled: the daemon has its first batch in hand
    scan = _scan(root, db)
    _, err = scan.communicate(timeout=600)
    assert scan.returncode == 0 and "failed: none" in err, err
    assert wait_until(lambda: set(tagged(db)) == files, 120), log.read_text()[-3000:]
    time.sleep(2)  # the scan's writes settle in the daemon: decided from the cache, not redone
    assert d.stop() == 0
    text = log.read_text()
    assert "ERROR" not in text and "failed" not in text.replace("(0 failed)", ""), text
    assert set(tagged(db).values()) == {1}, tagged(db)
    assert "waiting for" in err or _analysed(err) == 16, err  # it waited for the daemon's batch


def test_beets_genre_predict_beside_the_daemon(tmp_path: Path) -> None:
    """The plugin predicting a beets library the daemon watches, on the same cache: every
    file analysed once between them, beets ends 0."""
    pytest.importorskip("beets")
    from beetsenv import configure, runner
    from tagfiles import make_tagged

    src = tmp_path / "incoming" / "Album"
    src.mkdir(parents=True)
    for name in ("flac", "mp3-v24", "ogg", "m4a"):
        make_tagged(src, name, seconds=8.0)
    db = tmp_path / "cache.sqlite"
    settings = {"cache_db": f"sqlite:///{db}", "min_confidence": 0.01, "device": "cpu"}
    beet = runner(configure(tmp_path, {}, {**settings, "auto": "no"}), timeout=600)
    beet("import", str(src))
    library = tmp_path / "library"
    d = Daemon(library, db, tmp_path / "daemon.log", "--log-level", "info", "--policy",
               "overwrite")
    out = beet("-v", "genre-predict", "-f")
    every = {str(p) for p in library.rglob("*") if p.is_file()}
    assert wait_until(lambda: set(tagged(db)) >= every, 120), (tmp_path / "daemon.log").read_text()
    time.sleep(2)
    assert d.stop() == 0
    analyses = dict(query(db, "SELECT path, analyses FROM tracks"))
    assert len(every) == 4 and all(analyses.get(p) == 1 for p in every), (analyses, out.stderr)
