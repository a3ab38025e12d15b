"""Hard inputs (issue 9): file names that are not UTF-8, that look like rich markup, that hold
terminal escapes and newlines; folders that cannot be read. Real files, real CLI processes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tagger.cache import Cache
from tagger.cache.queue import WorkQueue
from tagger.cache.store import decode_path, encode_path
from tagger.cli import expand
from tagger.display import display
from tagger.formats.kinds import LIBRARY_EXTENSIONS as AUDIO_EXTENSIONS
from tagger.library.walk import walk

REPO = Path(__file__).resolve().parent.parent
CAPS = "-dac_override,-dac_read_search"

#: Every kind of hard name: not UTF-8, closing markup, a markup-like word, an ANSI escape and a
#: newline. (A "/" cannot be in a name, so "[/x]" spans a folder and a file.)
CAFE = b"caf\xe9.wav"
LIVE = b"[live] set.wav"
MARKUP = b"a[/x]b.wav"  # in folder "a["
ESCAPE = b"esc\x1b[31mred\nline.wav"
BROKEN = b"bad\xff[/x].mp3"  # in folder "bad\xff[": not audio


def cli(*args: str | bytes, caps_dropped: bool = False) -> subprocess.CompletedProcess[bytes]:
    """``python -m tagger ARGS``; bytes out, so a test sees exactly what a terminal would get."""
    argv: list[str | bytes] = [sys.executable, "-m", "tagger", *args]
    if caps_dropped and os.geteuid() == 0:  # root reads anything: drop what lets it
        argv = ["setpriv", f"--inh-caps={CAPS}", f"--bounding-set={CAPS}", *argv]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    return subprocess.run(argv, capture_output=True, env=env, timeout=600)


def text(b: bytes) -> str:
    """Output must be valid UTF-8 text, whatever the names."""
    return b.decode("utf-8")


def need_unreadable_folders() -> None:
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv")


def wav(path: bytes, seconds: float = 4.0) -> bytes:
    """A real WAV file at ``path`` (any bytes; soundfile itself cannot open such names)."""
    t = np.arange(int(16_000 * seconds)) / 16_000
    pcm = 0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-(t % 0.5) * 5)
    tmp = os.path.join(os.path.dirname(path), b".tmp-make.wav")
    sf.write(os.fsdecode(tmp), pcm.astype("float32"), 16_000)
    os.rename(tmp, path)
    return path


def hard_library(root: Path) -> dict[str, bytes]:
    """A folder with every hard name, as bytes paths."""
    r = os.fsencode(root)
    os.mkdir(os.path.join(r, b"a["))
    os.mkdir(os.path.join(r, b"bad\xff["))
    files = {
        "cafe": wav(os.path.join(r, CAFE)),
        "live": wav(os.path.join(r, LIVE)),
        "markup": wav(os.path.join(r, b"a[", b"x]b.wav")),
        "escape": wav(os.path.join(r, ESCAPE)),
        "broken": os.path.join(r, b"bad\xff[", b"x].mp3"),
    }
    with open(files["broken"], "wb") as f:
        f.write(b"not music at all\n" * 50)
    return files


# --- the cache and the daemon's queue store any path ------------------------------------------


def test_path_codec_round_trips_any_name() -> None:
    for p in ["/music/plain.flac", "/music/Motörhead/日本.mp3", os.fsdecode(b"/m/caf\xe9.wav"),
              os.fsdecode(b"/m/\xff\xfe\x80.ogg"), "b64:not-a-real-path", "/m/b64:x.mp3"]:
        stored = encode_path(p)
        stored.encode("utf-8")  # storable text on SQLite and PostgreSQL
        assert decode_path(stored) == p
    assert encode_path("/music/plain.flac") == "/music/plain.flac"  # old rows stay readable
    assert encode_path(os.fsdecode(b"/m/caf\xe9.wav")) == "b64:L20vY2Fm6S53YXY="


def test_cache_keeps_undecodable_paths(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/lib/caf\xe9.wav")
    moved = os.fsdecode(os.fsencode(tmp_path) + b"/lib/\xff.wav")
    with Cache(f"sqlite:///{db}") as cache:
        cache.upsert(odd, size=3, mtime_ns=4, status="failed", error_code="corrupt",
                     error_reason="broken")
        row = cache.get(odd)
        assert row is not None and row.path == odd and row.size == 3
        assert cache.stat_index([str(tmp_path)]) == {odd: (3, 4, None, "failed", None, None)}
        assert list(cache.stat_index(paths=[odd])) == [odd]
        assert [r.path for r in cache.rows_under([str(tmp_path / "lib")])] == [odd]
        assert cache.last_errors(5)[0]["path"] == odd
        cache.count_analysis(odd)
        cache.move(odd, moved)
        assert cache.get(odd) is None and cache.get(moved) is not None
        stored = sqlite3.connect(db).execute("SELECT path FROM tracks").fetchone()[0]
        assert stored.startswith("b64:") and decode_path(stored) == moved


def test_work_queue_keeps_undecodable_paths(tmp_path: Path) -> None:
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.flac")
    with Cache(f"sqlite:///{tmp_path / 'q.sqlite'}") as cache:
        q = WorkQueue(cache)
        q.put(odd, "new")
        q.put(odd, "changed")  # at most once
        assert q.take(10) == [odd] and len(q) == 1
        assert q.retry_later(odd) is True
        assert q.take(10) == []  # backing off
        q.done([odd])
        assert len(q) == 0


# --- predict ----------------------------------------------------------------------------------


def test_predict_prints_hard_names_escaped_and_never_as_markup(tmp_path: Path) -> None:
    files = hard_library(tmp_path)
    out = cli("predict", "--device", "cpu", str(tmp_path))
    stdout, stderr = text(out.stdout), text(out.stderr)
    assert out.returncode == 1, stderr
    assert "Traceback" not in stderr and "\x1b" not in stdout + stderr
    shown = {k: display(os.fsdecode(p)) for k, p in files.items()}
    assert shown["cafe"] == f"{tmp_path}/caf\\xe9.wav"
    assert shown["escape"] == f"{tmp_path}/esc\\x1b[31mred\\nline.wav"
    lines = stdout.splitlines()
    assert len(lines) == 4
    for key in ("cafe", "live", "markup", "escape"):
        assert sum(line.startswith(f"{shown[key]}: ") for line in lines) == 1, (key, lines)
    assert (f"error {tmp_path}/bad\\xff[/x].mp3: not an audio file ffmpeg can read"
            in stderr), stderr
    assert "1 of 5 files failed" in stderr


def test_predict_json_is_valid_and_lossless(tmp_path: Path) -> None:
    files = hard_library(tmp_path)
    out = cli("predict", "--json", "--device", "cpu", str(tmp_path))
    assert out.returncode == 1, out.stderr
    out.stdout.decode("ascii")  # pure ASCII: valid UTF-8 whatever the locale
    results = json.loads(out.stdout)
    assert {os.fsencode(r["path"]) for r in results} == set(files.values())
    by_path = {os.fsencode(r["path"]): r for r in results}
    assert not by_path[files["broken"]]["ok"] and by_path[files["broken"]]["error"] == "not-audio"
    assert all(by_path[files[k]]["ok"] for k in ("cafe", "live", "markup", "escape"))
    assert b'/caf\\udce9.wav"' in out.stdout


def test_predict_reports_an_unreadable_folder_and_predicts_the_rest(tmp_path: Path) -> None:
    need_unreadable_folders()
    wav(os.fsencode(tmp_path / "good.wav"))
    locked = tmp_path / "locked"
    locked.mkdir()
    wav(os.fsencode(locked / "inside.wav"))
    (tmp_path / ".hidden").mkdir()
    wav(os.fsencode(tmp_path / ".hidden" / "skipped.wav"))
    (tmp_path / "loop").symlink_to(tmp_path)  # a symlink loop: harmless
    locked.chmod(0)
    try:
        out = cli("predict", "--device", "cpu", str(tmp_path), caps_dropped=True)
        alone = cli("predict", "--json", str(locked), caps_dropped=True)
    finally:
        locked.chmod(0o755)
    stdout, stderr = text(out.stdout), text(out.stderr)
    assert out.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert (f"error {locked}: cannot read this folder: permission denied; its files were skipped"
            in stderr)
    assert stdout.startswith(f"{tmp_path}/good.wav: ") and len(stdout.splitlines()) == 1
    # Only an unreadable folder: said so, exit 1 (not "no audio files found", a usage error).
    assert alone.returncode == 1, alone.stderr
    assert (f"error {locked}: cannot read this folder: permission denied; its files were skipped"
            in text(alone.stderr))
    assert "no audio files found" not in text(alone.stderr)
    assert json.loads(alone.stdout) == [
        {"path": str(locked), "ok": False, "error": "unreadable-folder",
         "reason": "cannot read this folder: permission denied; its files were skipped"}]


def test_predict_and_scan_walk_folders_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One walker: the same extensions, hidden folders skipped, symlink loops harmless."""
    for ext in sorted(AUDIO_EXTENSIONS):
        (tmp_path / f"a{ext}").write_bytes(b"x")
    (tmp_path / "UPPER.MP3").write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "h.mp3").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.wv").write_bytes(b"x")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)
    found = list(expand([str(tmp_path)]))
    assert found == [p for p, _ in walk([tmp_path], clean_temps=False)]
    names = {os.path.relpath(p, tmp_path) for p in found}
    assert names == {f"a{ext}" for ext in AUDIO_EXTENSIONS} | {"UPPER.MP3", "sub/s.wv"}
    assert {".wv", ".ape", ".mpc", ".m4b", ".aifc"} <= AUDIO_EXTENSIONS
    # Given relative, found relative; files named on the command line are used as given.
    monkeypatch.chdir(tmp_path / "sub")
    (tmp_path / "sub" / "in").mkdir()
    (tmp_path / "sub" / "in" / "i.opus").write_bytes(b"x")
    assert list(expand(["in", "../notes.txt", "missing.mp3"])) == ["in/i.opus", "../notes.txt", "missing.mp3"]


# --- scan, show, stats, status, revert ----------------------------------------------------------


def test_library_commands_with_hard_names(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    files = hard_library(lib)
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    report = tmp_path / "report.json"
    scan = cli("scan", "--db", db, "--device", "cpu", "--min-confidence", "0.01",
               "--json", str(report), str(lib))
    stdout, stderr = text(scan.stdout), text(scan.stderr)
    # The broken file fails (exit 1); every other name is analysed and tagged.
    assert scan.returncode == 1, stderr
    assert "Traceback" not in stderr and "\x1b" not in stderr
    assert f"error {lib}/bad\\xff[/x].mp3: not an audio file ffmpeg can read" in stderr
    assert "5 files: " in stderr and "4 tagged" in stderr and "failed: not-audio 1" in stderr
    data = json.loads(report.read_bytes().decode("ascii"))
    assert {os.fsencode(f["path"]) for f in data["files"]} == set(files.values())

    cafe = os.fsdecode(files["cafe"])
    shown = cli("show", "--db", db, cafe)
    assert shown.returncode == 0, shown.stderr
    assert text(shown.stdout).startswith(f"{lib}/caf\\xe9.wav\n  status: done\n")
    shown_json = cli("show", "--json", "--db", db, cafe)
    assert shown_json.returncode == 0
    assert json.loads(shown_json.stdout)[0]["path"] == cafe

    stats = cli("stats", "--db", db)
    assert stats.returncode == 0 and "5 files known: 4 done, 1 failed" in text(stats.stdout)
    status = cli("status", "--db", db)
    assert status.returncode == 0
    assert (f"  {lib}/bad\\xff[/x].mp3: not an audio file ffmpeg can read"
            in text(status.stdout))
    status_json = json.loads(cli("status", "--json", "--db", db).stdout)
    assert [os.fsencode(e["path"]) for e in status_json["last_errors"]] == [files["broken"]]

    os.unlink(files["live"])  # revert cannot read it back: one failure, exit 1
    rev = cli("revert", "--db", db, str(lib))
    stdout, stderr = text(rev.stdout), text(rev.stderr)
    assert rev.returncode == 1, stderr
    reverted = {line.split(": ")[0]: line for line in stdout.splitlines()}
    assert set(reverted) == {f"{lib}/caf\\xe9.wav", f"{lib}/esc\\x1b[31mred\\nline.wav",
                             f"{lib}/a[/x]b.wav"}
    assert all(line.endswith(" -> (none)") for line in reverted.values())
    assert f"error {lib}/[live] set.wav: " in stderr  # the reason's words are the tag reader's
    assert "reverted 3 files, skipped 0, failed 1" in stderr


def test_scan_reports_unreadable_folders_and_exits_1(tmp_path: Path) -> None:
    need_unreadable_folders()
    locked = tmp_path / "lib" / "locked"
    locked.mkdir(parents=True)
    wav(os.fsencode(locked / "inside.wav"))
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    locked.chmod(0)
    try:
        out = cli("scan", "--db", db, str(tmp_path / "lib"), caps_dropped=True)
        only = cli("scan", "--db", db, str(locked), caps_dropped=True)
    finally:
        locked.chmod(0o755)
    for run in (out, only):
        stderr = text(run.stderr)
        assert run.returncode == 1, stderr
        # One line naming the folder (its words are scan.py's), and not taken for "no files".
        lines = [line for line in stderr.splitlines() if line.startswith(f"error {locked}: ")]
        assert len(lines) == 1 and lines[0].endswith("; its files were skipped"), stderr
        assert "0 files: " in stderr and "failed: unreadable-folder 1" in stderr
        assert "Traceback" not in stderr


def test_display_escapes_what_a_terminal_would_act_on() -> None:
    assert display("/m/Motörhead/日本 [live].mp3") == "/m/Motörhead/日本 [live].mp3"
    assert display(os.fsdecode(b"/m/caf\xe9.wav")) == "/m/caf\\xe9.wav"
    assert display("/m/a\nb\tc\r\x1b[2J\x7f.mp3") == "/m/a\\nb\\tc\\r\\x1b[2J\\x7f.mp3"
    assert display("/m/\u202egnp.mp3") == "/m/\\u202egnp.mp3"  # right-to-left override
    assert display("/m/back\\slash") == "/m/back\\\\slash"  # so "\\xe9" above is unambiguous
