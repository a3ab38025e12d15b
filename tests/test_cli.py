"""``genre-tagger`` end to end, as a user runs it: a real subprocess on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FORMATS


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_predict_json_on_every_format(audio_files: dict[str, Path]) -> None:
    out = run_cli("predict", "--json", "--device", "cpu", *map(str, audio_files.values()))
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert [r["path"] for r in results] == [str(p) for p in audio_files.values()]
    top = set()
    for r in results:
        assert r["ok"] and len(r["raw"]) == 100 and r["windows"] == 4
        assert r["model"].startswith("musicnn@")
        top.add(r["genres"][0]["genre"] if r["genres"] else None)
    # The same music in nine containers gets the same top genre.
    assert len(top) == 1, top
    # ...and nearly the same scores: codecs differ, the music does not.
    raws = [list(r["raw"].values()) for r in results]
    assert max(max(abs(a - b) for a, b in zip(raws[0], x)) for x in raws) < 0.1
    assert len(FORMATS) == len(results)


def test_predict_text_output_and_failure_exit_code(audio_files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp3"
    bad.write_text("not music")
    out = run_cli("predict", "--budget", "all", str(audio_files["flac"]), str(bad),
                  str(tmp_path / "missing.flac"))
    assert out.returncode == 1
    assert out.stdout.startswith(f"{audio_files['flac']}: ")
    assert f"{bad}: not an audio file" in out.stderr
    assert f"{tmp_path / 'missing.flac'}: no such file" in out.stderr
    assert "2 of 3 files failed" in out.stderr


def test_predict_walks_folders(audio_files: dict[str, Path]) -> None:
    folder = audio_files["mp3"].parent
    out = run_cli("predict", "--json", "--top-k", "1", str(folder))
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    assert len(results) == len(FORMATS) and all(len(r["genres"]) <= 1 for r in results)


def test_bad_options_are_clear() -> None:
    out = run_cli("predict", "--budget", "zero", "x.mp3")
    assert out.returncode == 2 and "'all'" in out.stderr


def test_demo_runs_offline(tmp_path: Path) -> None:
    out = run_cli("demo", "--keep", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    results = {Path(r["path"]).stem: r for r in json.loads(out.stdout)}
    assert set(results) == {"drum-machine", "chord-study", "power-chords"}
    drums = [g["genre"] for g in results["drum-machine"]["genres"]]
    assert "Electronic" in drums or "Techno" in drums
