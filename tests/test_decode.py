"""Every decode error, on real bad files; decoding never writes to the file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FORMATS, ffmpeg_encode, music_like

from tagger.config import EngineConfig
from tagger.decode import _run, decode, decode_segments
from tagger.errors import (
    CorruptAudio,
    DecoderCrashed,
    DecodeTimeout,
    EmptyAudio,
    MissingFile,
    NoPermission,
    NotAudio,
    SilentAudio,
    TooShort,
    TruncatedAudio,
)
from tagger.extract import extract_windows
from tagger.features import SAMPLE_RATE, plan_windows


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("good")
    pcm = music_like(20.0, seed=1)
    return {"mp3": ffmpeg_encode(pcm, 44_100, d / "good.mp3", FORMATS["mp3"][1]),
            "flac": ffmpeg_encode(pcm, 44_100, d / "good.flac", FORMATS["flac"][1]),
            "wav": ffmpeg_encode(pcm, 44_100, d / "good.wav", FORMATS["wav"][1])}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_decodes_to_16k_mono(audio_files: dict[str, Path], name: str) -> None:
    audio = decode(audio_files[name])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - 13.0) < 0.1  # encoder padding trimmed within 100 ms
    assert 0.2 < np.abs(audio).max() <= 1.01


def test_ffmpeg_and_libsndfile_agree(good: dict[str, Path]) -> None:
    out = subprocess.run([sys.executable, "-m", "tagger.sndfile_child", str(good["flac"]),
                          str(SAMPLE_RATE)], capture_output=True, check=True).stdout
    fallback = np.frombuffer(out, np.float32)
    main = decode(good["flac"])
    assert len(fallback) == len(main)
    assert np.abs(fallback - main).max() < 0.01  # two soxr builds, same signal


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFile, match="no such file"):
        decode(tmp_path / "gone.mp3")


def test_no_permission(good: dict[str, Path], tmp_path: Path) -> None:
    locked = tmp_path / "locked.flac"
    shutil.copy(good["flac"], locked)
    locked.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(NoPermission, match="permission denied"):
            decode(locked)
        return
    # root reads anything: drop the capabilities that let it, and run the same code path.
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv")
    code = ("from tagger.decode import decode\nfrom tagger.errors import NoPermission\n"
            f"try:\n    decode({str(locked)!r})\nexcept NoPermission as e:\n    print(e.code, e)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    caps = "-dac_override,-dac_read_search"
    out = subprocess.run(["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}",
                          sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.startswith("permission"), out.stderr


@pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 20,
                                     np.random.default_rng(0).bytes(50_000)],
                         ids=["text", "random-bytes"])
def test_not_audio(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "fake.mp3"
    f.write_bytes(content)
    with pytest.raises(NotAudio) as e:
        decode(f)
    assert str(f) in str(e.value)


def test_an_image_is_not_audio(tmp_path: Path) -> None:
    png = tmp_path / "cover.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32",
                    "-frames:v", "1", "-f", "image2", "-c:v", "png", str(png)], check=True)
    with pytest.raises(NotAudio):
        decode(png)


def test_directory_and_fifo_are_not_audio(tmp_path: Path) -> None:
    with pytest.raises(NotAudio, match="directory"):
        decode(tmp_path)
    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    with pytest.raises(NotAudio, match="regular file"):  # would block forever if opened
        decode(fifo)


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.flac"
    f.touch()
    with pytest.raises(EmptyAudio, match="0 bytes"):
        decode(f)


def test_zero_length_audio(tmp_path: Path) -> None:
    f = tmp_path / "zero.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=44100", "-t", "0",
                    str(f)], check=True)
    with pytest.raises(EmptyAudio, match="zero length"):
        decode(f)


def test_truncated_mp3(good: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "half.mp3"
    f.write_bytes(good["mp3"].read_bytes()[:40_000])
    with pytest.raises(TruncatedAudio, match="truncated"):
        decode(f)


def test_truncated_flac_is_corrupt(good: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "cut.flac"
    f.write_bytes(good["flac"].read_bytes()[:60_000])
    with pytest.raises((CorruptAudio, TruncatedAudio)):
        decode(f)


def test_corrupt_frames(good: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(good["mp3"].read_bytes())
    rng = np.random.default_rng(1)
    for i in range(2000, len(data), 40):
        data[i] = int(rng.integers(256))
    f = tmp_path / "noisy.mp3"
    f.write_bytes(bytes(data))
    with pytest.raises((CorruptAudio, TruncatedAudio)) as e:
        decode(f)
    assert "decoded" in e.value.reason


def test_timeout_stops_the_decoder(good: dict[str, Path]) -> None:
    with pytest.raises(DecodeTimeout, match="longer than"):
        decode(good["flac"], timeout=0.001)


def test_a_crashing_decoder_does_not_take_us_down(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with pytest.raises(DecoderCrashed, match="SIGSEGV"):
        _run(crash, tmp_path / "x.mp3", 10)


def test_silent_and_tiny_files(tmp_path: Path) -> None:
    cfg = EngineConfig(budget=None)
    silent = ffmpeg_encode(np.zeros(44_100 * 5), 44_100, tmp_path / "silent.flac", ["-c:a", "flac"])
    with pytest.raises(SilentAudio):
        extract_windows(silent, cfg)
    tiny = ffmpeg_encode(music_like(0.3), 44_100, tmp_path / "tiny.wav", ["-c:a", "pcm_s16le"])
    with pytest.raises(TooShort, match=r"0\.30 s"):
        extract_windows(tiny, cfg)


def test_short_track_is_analysed_with_one_window(tmp_path: Path) -> None:
    f = ffmpeg_encode(music_like(1.5), 44_100, tmp_path / "short.flac", ["-c:a", "flac"])
    assert extract_windows(f, EngineConfig(budget=None)).windows.shape == (1, 187, 96)


def test_budget_decodes_only_segments_and_matches_full_decode(good: dict[str, Path]) -> None:
    full = extract_windows(good["flac"], EngineConfig(budget=None, window_hop=93))
    seeked = extract_windows(good["flac"], EngineConfig(budget=3, window_hop=93))
    assert seeked.seeked and seeked.windows.shape == (3, 187, 96)
    assert not full.seeked and full.windows.shape == (12, 187, 96)
    # Each seeked window equals the full decode's window at the same place (resampler edges
    # and seek granularity aside).
    n_samples = len(decode(good["flac"]))
    all_starts = plan_windows(n_samples, hop=93).starts
    for k, start in enumerate(plan_windows(n_samples, hop=93, budget=3).starts):
        i = all_starts.index(start)
        assert np.abs(seeked.windows[k] - full.windows[i]).mean() < 0.01


def test_segments_past_the_end_of_a_truncated_file_fall_back(good: dict[str, Path]) -> None:
    assert decode_segments(good["wav"], [(16_000 * 30, 48_128)]) is None


def test_decoding_never_writes_to_the_file(good: dict[str, Path]) -> None:
    f = good["mp3"]
    before = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    decode(f)
    extract_windows(f, EngineConfig(budget=2))
    assert (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) == before
