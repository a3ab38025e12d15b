"""Shared fixtures: real encoded audio files made with ffmpeg, and one loaded engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: extension, ffmpeg encoder arguments: every container the issue names.
FORMATS: dict[str, tuple[str, list[str]]] = {
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-q:a", "4"]),
    "flac": ("flac", ["-c:a", "flac"]),
    "ogg": ("ogg", ["-c:a", "libvorbis"]),
    "opus": ("opus", ["-c:a", "libopus", "-b:a", "96k"]),
    "m4a-aac": ("m4a", ["-c:a", "aac", "-b:a", "128k"]),
    "m4a-alac": ("m4a", ["-c:a", "alac"]),
    "wav": ("wav", ["-c:a", "pcm_s16le"]),
    "aiff": ("aiff", ["-c:a", "pcm_s16be"]),
    "wma": ("wma", ["-c:a", "wmav2", "-b:a", "128k"]),
}


def ffmpeg_encode(pcm: np.ndarray, rate: int, out: Path, args: list[str]) -> Path:
    data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar", str(rate),
                    "-ac", "1", "-i", "-", *args, str(out)], input=data, check=True)
    return out


def music_like(seconds: float, rate: int = 44_100, seed: int = 0) -> np.ndarray:
    """Chords and a beat: enough structure for real features, deterministic."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 3
    beat = np.exp(-(t % 0.5) * 30) * np.sin(2 * np.pi * 60 * t)
    return 0.4 * chord + 0.4 * beat + 0.02 * rng.standard_normal(len(t))


@pytest.fixture(scope="session", autouse=True)
def _need_ffmpeg() -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is required (apt install ffmpeg)")


@pytest.fixture(scope="session")
def audio_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One 13-second file per format (4 whole windows, whatever the codec padding)."""
    folder = tmp_path_factory.mktemp("formats")
    pcm = music_like(13.0)
    return {name: ffmpeg_encode(pcm, 44_100, folder / f"track-{name}.{ext}", args)
            for name, (ext, args) in FORMATS.items()}


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    """The one engine most tests share (loaded once: 2-3 s): the CPU, the adaptive budget, and
    the scan tests' low bar (:data:`scanning.LOW_BAR`)."""
    from scanning import LOW_BAR

    from tagger.analysis.config import EngineConfig
    from tagger.analysis.engine import Engine

    yield Engine(EngineConfig(device="cpu", selection=LOW_BAR))


@pytest.fixture(scope="session")
def engine_full() -> Iterator[object]:
    """An engine that scores every window (no budget), for the tests of windows and pooling."""
    from tagger.analysis.config import EngineConfig
    from tagger.analysis.engine import Engine

    yield Engine(EngineConfig(budget=None, device="cpu"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A real PostgreSQL server for the session (tests/pgserver.py)."""
    from pgserver import INSTALL_HINT, postgres_server

    try:
        with postgres_server() as server:
            yield server
    except RuntimeError as e:
        pytest.fail(f"{e}\n{INSTALL_HINT}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty cache database of each kind the cache supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cache.sqlite'}"
    return str(request.getfixturevalue("postgres").database())
