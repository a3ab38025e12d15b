"""Every file under the roots ends with an outcome, in the report and in the cache; failures are
retried when what they depended on changes, and a machine's error is never a file's."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from scanning import scanner
from tagfiles import make_tagged

from tagger.analysis.engine import Engine
from tagger.cache import Cache
from tagger.formats.identity import audio_identity
from tagger.tags import read_genres

REPO = Path(__file__).resolve().parent.parent
scan = scanner


def test_a_copy_of_a_failed_file_gets_its_own_outcome(tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    good = make_tagged(lib, "flac", seconds=6.0)
    # The same FLAC frames behind a damaged stream header: one audio identity, two fates.
    bad = lib / "a-damaged-copy.flac"
    data = bytearray(good.read_bytes())
    data[18:21] = b"\x00\x00\x00"  # STREAMINFO's sample rate: 0
    bad.write_bytes(bytes(data))
    assert audio_identity(bad) == audio_identity(good)
    with Cache(f"sqlite:///{tmp_path / 'c.sqlite'}") as cache:
        report = scan(lib, cache, engine).run()
        outcomes = {Path(o.path).name: o for o in report.outcomes}
        assert set(outcomes) == {"a-damaged-copy.flac", "flac.flac"}  # nobody skipped silently
        assert outcomes["a-damaged-copy.flac"].error and outcomes["flac.flac"].decision == "write"
        assert read_genres(good)
        assert cache.get(str(bad)).status == "failed"  # type: ignore[union-attr]


def test_tag_stage_failures_are_recorded_and_retried_only_when_something_changes(
        tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    path = make_tagged(lib, "mp3-v24")
    os.chmod(path, 0o444)  # the owner's intent: not to be written, even by root
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    with Cache(db) as cache:
        first = scan(lib, cache, engine).run()
        assert [(o.error, o.reason) for o in first.outcomes] == [("read-only", "the file is read-only")]
        row = cache.get(str(path))
        assert row is not None and (row.status, row.error_code, row.error_reason) == (
            "failed", "read-only", "the file is read-only")
        assert cache.summary()["failures"] == {"read-only": 1}  # `stats` counts it
        assert scan(lib, cache, engine).run().counts["unchanged"] == 1  # not retried for nothing
        # Other settings: tried again (and still refused).
        again = scan(lib, cache, engine, policy="overwrite").run()
        assert [o.error for o in again.outcomes] == ["read-only"]
        os.chmod(path, 0o644)
        os.utime(path)  # the person fixed it (the file changed)
        fixed = scan(lib, cache, engine).run()
        assert [o.decision for o in fixed.outcomes] == ["write"] and not fixed.failures
        assert cache.get(str(path)).status == "done"  # type: ignore[union-attr]


def test_analysis_failures_are_retried_on_request(tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    (lib / "noise.mp3").write_bytes(os.urandom(4096))
    with Cache(f"sqlite:///{tmp_path / 'c.sqlite'}") as cache:
        assert scan(lib, cache, engine).run().failures == {"not-audio": 1}
        assert scan(lib, cache, engine).run().counts["unchanged"] == 1
        assert scan(lib, cache, engine, retry_failed=True).run().failures == {"not-audio": 1}
        cache.upsert(str(lib / "noise.mp3"), decision_key="analysis|0.0.1|ffmpeg version 4")
        assert scan(lib, cache, engine).run().failures == {"not-audio": 1}  # another decoder then


def test_deleted_files_are_marked_and_come_back_when_they_return(tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    path = make_tagged(lib, "ogg")
    with Cache(f"sqlite:///{tmp_path / 'c.sqlite'}") as cache:
        scan(lib, cache, engine).run()
        kept = tmp_path / "kept.ogg"
        shutil.move(path, kept)
        report = scan(lib, cache, engine).run()
        assert report.counts["deleted"] == 1
        assert cache.get(str(path)).status == "deleted"  # type: ignore[union-attr]
        assert cache.summary()["by_status"] == {"deleted": 1}
        shutil.move(kept, path)  # back, unchanged: known again, no analysis
        back = scan(lib, cache, engine).run()
        assert back.counts["analysed"] == 0 and back.counts["unchanged"] == 0
        assert cache.get(str(path)).status == "done"  # type: ignore[union-attr]


def test_an_unreadable_folder_is_reported_not_taken_for_empty(tmp_path: Path, engine: Engine) -> None:
    lib = tmp_path / "music"
    (lib / "locked").mkdir(parents=True)
    make_tagged(lib / "locked", "flac")
    make_tagged(lib, "ogg")
    os.chmod(lib / "locked", 0)
    caps = "-dac_override,-dac_read_search"
    try:
        out = subprocess.run(
            ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", sys.executable, "-m", "tagger",
             "scan", str(lib), "--db", f"sqlite:///{tmp_path / 'c.sqlite'}", "--dry-run",
             "--device", "cpu"],
            env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=300)
    finally:
        os.chmod(lib / "locked", stat.S_IRWXU)
    assert out.returncode == 1, out.stderr
    said = f"{lib / 'locked'}: cannot read this folder: permission denied; its files were skipped"
    assert said in out.stderr


def test_no_ffmpeg_stops_the_scan_and_blames_no_file(tmp_path: Path) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    make_tagged(lib, "flac")
    db = tmp_path / "c.sqlite"
    empty = tmp_path / "bin"
    empty.mkdir()
    out = subprocess.run([sys.executable, "-m", "tagger", "scan", str(lib), "--db", f"sqlite:///{db}",
                          "--device", "cpu"],
                         env=dict(os.environ, PYTHONPATH=str(REPO), PATH=str(empty)),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "ffmpeg was not found on PATH; install it (e.g. apt install ffmpeg)" in out.stderr
    assert "Traceback" not in out.stderr
    if db.exists():
        with Cache(f"sqlite:///{db}") as cache:
            assert cache.summary()["failures"] == {}  # nothing was blamed on the file
