"""Seeking to the analysis windows with long-lived libsndfile children (``SegmentReader``).

Held to the windows cut from a full decode (what ``--budget all`` analyses), in every format
libsndfile reads, mono and stereo, at the track's edges; and to ffmpeg wherever the children
cannot help: a format they refuse, a child killed mid-request, a request that outlasts its
timeout. Children never outlive their reader or their process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FORMATS, music_like

from tagger.analysis.decode import SegmentReader, decode, decode_segments
from tagger.analysis.features import HOP, N_FFT, WINDOW_SAMPLES, log_mel, log_mel_segment

RATE = 44_100


def encode(pcm: np.ndarray, out: Path, args: list[str]) -> Path:
    """Interleaved (samples, channels) float PCM -> a real encoded file."""
    data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar", str(RATE),
                    "-ac", str(pcm.shape[1]), "-i", "-", *args, str(out)], input=data, check=True)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("segments")
    left = music_like(20.0, seed=3)
    right = np.roll(music_like(20.0, seed=4), 5000) * 0.7  # the sides differ: the mix matters
    stereo = np.stack([left, right], axis=1)
    out = {}
    for name in ("mp3", "flac", "ogg", "opus", "wav", "aiff"):
        ext, args = FORMATS[name]
        out[f"{name}-stereo"] = encode(stereo, d / f"stereo-{name}.{ext}", args)
    out["flac-mono"] = encode(left[:, None], d / "mono.flac", FORMATS["flac"][1])
    out["flac-6ch"] = encode(np.stack([left, right] * 3, axis=1), d / "six.flac",
                             FORMATS["flac"][1])
    return out


def segments_of(starts: list[int]) -> list[tuple[int, int]]:
    """The audio of windows starting at these frames (as budget mode asks for them)."""
    return [(s * HOP - N_FFT // 2, WINDOW_SAMPLES) for s in starts]


#: Out of time order, the first window (its audio starts before 0), and the last whole one.
STARTS = [400, 0, 187, 1000 - 187 - 2, 600]


@pytest.mark.parametrize("name", ["mp3-stereo", "flac-stereo", "ogg-stereo", "opus-stereo",
                                  "wav-stereo", "aiff-stereo", "flac-mono"])
def test_children_give_the_windows_of_the_full_decode(files: dict[str, Path], name: str) -> None:
    frames = log_mel(decode(files[name]))
    assert len(frames) >= 1000 - 2  # 20 s: 1251 frames
    reader = SegmentReader()
    try:
        pieces = decode_segments(files[name], segments_of(STARTS), 60, reader)
        assert reader.started == 1 and reader.fallbacks == 0
    finally:
        reader.close()
    assert pieces is not None
    for start, piece in zip(STARTS, pieces):
        got, want = log_mel_segment(piece), frames[start:start + 187]
        # The same samples up to the decoders' float rounding (ffmpeg's own input seeks were
        # measured off by whole Ogg pages on some real files, and slightly off on MP3s).
        assert np.abs(got - want).mean() < 2e-3, (name, start, np.abs(got - want).mean())


def test_what_the_children_refuse_ffmpeg_decodes(files: dict[str, Path]) -> None:
    """Six channels: ffmpeg's downmix matrix is its own, so the child declines the file."""
    reader = SegmentReader()
    try:
        got = decode_segments(files["flac-6ch"], segments_of(STARTS), 60, reader)
        assert reader.fallbacks == 1
    finally:
        reader.close()
    plain = decode_segments(files["flac-6ch"], segments_of(STARTS), 60)
    assert got is not None and plain is not None
    assert all(np.array_equal(a, b) for a, b in zip(got, plain))


def test_a_killed_or_slow_child_is_replaced_and_ffmpeg_steps_in(files: dict[str, Path]) -> None:
    path = files["ogg-stereo"]
    reader = SegmentReader()
    try:
        first = reader.read(path, segments_of([187]), 60)
        assert first is not None and len(reader.children()) == 1
        # Killed between requests (the OOM killer, a person): the next request starts another.
        os.kill(reader.children()[0], signal.SIGKILL)
        time.sleep(0.2)
        assert reader.read(path, segments_of([187]), 60) == first
        assert reader.started == 2
        # A request that outlasts its timeout: the child is killed, the caller told None.
        assert reader.read(path, segments_of(STARTS), 1e-4) is None
        assert reader.children() == [] or all(_gone(p) for p in reader.children())
        # decode_segments then asks ffmpeg: the file still gets its windows.
        pieces = decode_segments(path, segments_of([187]), 60, reader)
        assert pieces is not None and len(pieces[0]) == WINDOW_SAMPLES
    finally:
        reader.close()
    assert reader.children() == []


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_children_end_with_their_process(files: dict[str, Path], tmp_path: Path) -> None:
    """A process that never closes its reader (killed, or just ending): no child stays."""
    code = ("import sys; from pathlib import Path; from tagger.analysis.decode import "
            "SegmentReader; r = SegmentReader(); r.read(Path(sys.argv[1]), [(0, 48000)], 60); "
            "print(r.children()[0], flush=True); import os; os.kill(os.getpid(), 9)")
    out = subprocess.run([sys.executable, "-c", code, str(files["flac-mono"])],
                         capture_output=True, text=True, timeout=120)
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child)
