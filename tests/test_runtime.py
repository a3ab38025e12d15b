"""What runs the model on a CPU, seen from the command a person types.

``predict`` in fresh processes: offline (every socket connect refused and recorded: OpenVINO's
own usage telemetry, on by default, must never start), without OpenVINO (Keras takes over, same
answer), and in float32 against the default precision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ffmpeg_encode, music_like
from daemons import REPO

GUARD = """
import socket, sys
_log = {log!r}
def _refuse(*a, **k):
    with open(_log, "a") as fh:
        fh.write(repr(a[1:2]) + "\\n")
    raise OSError("network access during analysis")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = _refuse
{extra}
"""


def predict(tmp_path: Path, files: list[Path], *args: str, extra: str = "",
            name: str = "site") -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    site = tmp_path / name
    site.mkdir(exist_ok=True)
    log = tmp_path / f"{name}-connects.log"
    (site / "sitecustomize.py").write_text(GUARD.format(log=str(log), extra=extra))
    home = tmp_path / f"{name}-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", HOME=str(home),
               XDG_CONFIG_HOME=str(tmp_path / "cfg"), XDG_STATE_HOME=str(tmp_path / "state"),
               PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "tagger", "predict", "--json", *args,
                        *map(str, files)], capture_output=True, text=True, env=env, timeout=600)
    assert not log.exists(), log.read_text()
    # OpenVINO's telemetry (on by default) writes ~/intel/openvino_ga_cid before it sends.
    assert not (home / "intel").exists()
    assert r.returncode == 0, r.stderr
    return r, json.loads(r.stdout)


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("runtime")
    return [ffmpeg_encode(music_like(40.0, seed=s), 44_100, d / f"s{s}.ogg", ["-c:a", "libvorbis"])
            for s in (11, 12)]


def test_analysis_is_offline_and_works_without_openvino(songs: list[Path], tmp_path: Path) -> None:
    # Every window (13), so that the adaptive rule does not make the runs differ in windows.
    _, default = predict(tmp_path, songs, "--budget", "all")
    # A Python where `import openvino` fails (a platform without its wheel): Keras runs the
    # same networks in float32.
    _, keras = predict(tmp_path, songs, "--budget", "all", "--precision", "float32",
                       extra="sys.modules['openvino'] = None", name="no-openvino")
    _, f32 = predict(tmp_path, songs, "--budget", "all", "--precision", "float32", name="f32")
    for a, b, c in zip(default, keras, f32):
        assert a["path"] == b["path"] == c["path"]
        assert a["windows"] == b["windows"] == c["windows"]
        # OpenVINO float32 and Keras float32: the same arithmetic to rounding.
        assert max(abs(b["raw"][k] - c["raw"][k]) for k in b["raw"]) < 2e-4
        # The default (int8 timbral convolutions and bfloat16 where the CPU has bfloat16)
        # stays close to float32.
        assert max(abs(a["raw"][k] - c["raw"][k]) for k in a["raw"]) < 0.02
        assert a["genres"][0]["genre"] == c["genres"][0]["genre"]


CORE = ("for m in ('keras', 'tensorflow', 'jax', 'sklearn', 'starlette', 'jinja2', 'uvicorn', "
        "'multipart'): sys.modules[m] = None")


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line in a Python with neither Keras nor a backend: the core install."""
    site = tmp_path / "core-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(f"import sys\n{CORE}\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               XDG_STATE_HOME=str(tmp_path / "state"),
               PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True,
                          text=True, env=env, timeout=600)


def test_the_core_install_runs_every_everyday_command_and_says_what_else_to_install(
        songs: list[Path], tmp_path: Path) -> None:
    """Without Keras, TensorFlow and JAX (1.3 GB the core install leaves out): predict and
    scan work (on a machine with a GPU too: auto falls back to OpenVINO); --device gpu, train
    and evaluate stop before any work, naming the extra in the form pip takes from the
    checkout (genre-tagger is not on PyPI)."""
    _, ok = predict(tmp_path, songs, extra=CORE, name="core")
    assert [r["path"] for r in ok] == [str(s) for s in songs] and all(r["genres"] for r in ok)
    music = tmp_path / "music"
    music.mkdir()
    for s in songs:
        (music / s.name).write_bytes(s.read_bytes())
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    scan = _cli(tmp_path, "scan", str(music), "--db", db, "--device", "cpu")
    assert scan.returncode == 0 and "2 analysed" in scan.stderr, scan.stderr
    for args in (["stats", "--db", db], ["show", str(music / songs[0].name), "--db", db],
                 ["revert", str(music), "--db", db]):
        r = _cli(tmp_path, *args)
        assert r.returncode == 0, (args, r.stderr)
    gpu = _cli(tmp_path, "predict", "--device", "gpu", str(songs[0]))
    assert gpu.returncode == 2 and 'pip install ".[gpu]"' in gpu.stderr, gpu.stderr
    labels = tmp_path / "labels"
    for genre in ("Rock", "Jazz"):
        (labels / genre).mkdir(parents=True)
    for args in (["train", str(labels), "-o", str(tmp_path / "m.npz")],
                 ["evaluate", str(labels)]):
        r = _cli(tmp_path, *args)
        assert r.returncode == 2 and 'pip install ".[train]"' in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    # the page names its extra, and so does a daemon told to serve it, before it starts
    for args in (["serve", str(music), "--db", db],
                 ["watch", str(music), "--db", db, "--listen", "127.0.0.1:1"]):
        r = _cli(tmp_path, *args)
        assert r.returncode == 2 and 'pip install ".[web]"' in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    # learning names its own, smaller extra (scikit-learn without TensorFlow); going back needs
    # nothing more
    r = _cli(tmp_path, "learn", str(music), "--db", db)
    assert r.returncode == 2 and 'pip install ".[learn]"' in r.stderr, r.stderr
    r = _cli(tmp_path, "learn", str(music), "--back", "--db", db)
    assert r.returncode == 0 and "nothing to go back from" in r.stdout, r.stderr
    # a daemon told to learn without scikit-learn says so, and goes on tagging
    from daemons import Daemon, tagged, wait_until

    ddb = tmp_path / "daemon.sqlite"
    daemon = Daemon(music, ddb, tmp_path / "daemon.log",
                    env={"GENRE_TAGGER_LEARN": "true",
                         "PYTHONPATH": os.pathsep.join([str(tmp_path / "core-site"), str(REPO)])})
    try:
        said = (tmp_path / "daemon.log").read_text
        assert wait_until(lambda: "learning needs scikit-learn" in said(), 120), said()
        assert 'pip install ".[learn]"' in said() and "Traceback" not in said()
        assert len(tagged(ddb)) == len(songs), said()
    finally:
        assert daemon.stop() == 0
