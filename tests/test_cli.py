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
    assert out.returncode == 2
    assert out.stderr == ("Error: configuration: command line: 'budget' must be a whole number of windows, "
                          "'auto', or 'all' for every window, not 'zero'\n")


def test_demo_runs_offline(tmp_path: Path) -> None:
    out = run_cli("demo", "--keep", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    results = {Path(r["path"]).stem: r for r in json.loads(out.stdout)}
    assert set(results) == {"drum-machine", "chord-study", "power-chords"}
    drums = [g["genre"] for g in results["drum-machine"]["genres"]]
    assert "Electronic" in drums or "Techno" in drums


# --- exit codes: 0 fine, 1 some files failed, 2 usage or environment, 130 interrupted ----------


def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """A real SIGINT to the whole process group, as a terminal sends it, mid-prediction."""
    import signal

    import numpy as np
    import soundfile as sf

    song = tmp_path / "long.wav"
    t = np.arange(16_000 * 30) / 16_000
    sf.write(song, (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), 16_000)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "tagger", "predict", "--device", "cpu", "--jobs", "1",
                             "--budget", "all", *[str(song)] * 20], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # one file done: the model is loaded, more are in flight
    assert first.startswith(f"{song}: "), proc.communicate()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip().endswith("interrupted") and "Traceback" not in err and "Aborted!" not in err


def test_missing_ffmpeg_is_an_environment_error(tmp_path: Path) -> None:
    song = tmp_path / "a.mp3"
    song.write_bytes(b"x")
    env = dict(os.environ, PATH=str(tmp_path))  # no ffmpeg on it
    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    for args in (["predict", str(song)], ["scan", "--db", db, str(tmp_path)]):
        out = subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True, text=True, env=env,
                             timeout=120)
        assert out.returncode == 2, out.stderr
        assert "Error: ffmpeg was not found on PATH; install it (e.g. apt install ffmpeg)" in out.stderr


def test_a_cache_that_cannot_be_opened_is_an_environment_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tagger.cli import main

    (tmp_path / "a-file").write_text("")
    for url in (f"sqlite:///{tmp_path / 'a-file' / 'cache.sqlite'}", "nonsense://x"):
        for args in (["stats"], ["show", "x.mp3"], ["status"], ["revert", str(tmp_path)]):
            result = CliRunner().invoke(main, [*args, "--db", url])
            assert result.exit_code == 2, (args, url, result.output)
            assert "Error: cannot open the cache database: " in result.output
            assert "Traceback" not in result.output


def test_bad_watch_config_is_an_environment_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tagger.cli import main

    cfg = tmp_path / "config.toml"
    cfg.write_text(f'roots = ["{tmp_path}"]\ntop_k = "three"\n')
    result = CliRunner().invoke(main, ["watch", "--config", str(cfg)])
    assert result.exit_code == 2, result.output
    assert "Error: configuration: " in result.output and "top_k" in result.output


def test_show_exits_1_for_files_not_in_the_cache(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tagger.cli import main

    db = f"sqlite:///{tmp_path / 'c.sqlite'}"
    name = str(tmp_path / "x[/red].mp3")
    text = CliRunner().invoke(main, ["show", "--db", db, name])
    assert text.exit_code == 1 and text.output == f"{name}: not in the cache\n"
    as_json = CliRunner().invoke(main, ["show", "--db", db, "--json", name])
    assert as_json.exit_code == 1 and json.loads(as_json.output) == [{"path": name, "known": False}]
