"""Memory per file is bounded whatever the file's length (issue 9): budget mode seeks over the
whole declared length of a long file, and a full decode streams into log-mel frames, capped.

The long files are real: a 30-second MP3 repeated by ffmpeg's concat demuxer without re-encoding
(3 hours in about a second), and the same stream in Matroska, whose length mutagen cannot read.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg_encode, music_like

from tagger.analysis.budget import AdaptiveBudget
from tagger.analysis.config import EngineConfig
from tagger.analysis.decode import decode
from tagger.analysis.extract import extract_windows
from tagger.analysis.features import N_FRAMES, SAMPLE_RATE, LogMelStream, log_mel, plan_windows, repeat_pad

HOURS_3 = 3 * 3600.0


@pytest.fixture(scope="module")
def long_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("long")
    piece = ffmpeg_encode(music_like(30.0, rate=16_000), 16_000, d / "piece.mp3",
                          ["-c:a", "libmp3lame", "-b:a", "24k"])
    listing = d / "list.txt"
    listing.write_text(f"file '{piece}'\n" * int(HOURS_3 / 30))
    mp3, mka = d / "three-hours.mp3", d / "three-hours.mka"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-c", "copy", str(mp3)], check=True)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(mp3), "-c", "copy", str(mka)], check=True)
    return {"mp3": mp3, "mka": mka}


@pytest.mark.parametrize("seconds", [0.5, 2.9, 2.976, 3.5, 61.3])
@pytest.mark.parametrize("chunk", [1_000, 160_000])
def test_streamed_log_mel_equals_the_whole_signals(seconds: float, chunk: int) -> None:
    rng = np.random.default_rng(3)
    x = (0.3 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    stream = LogMelStream()
    for i in range(0, len(x), chunk):
        stream.feed(x[i:i + chunk])
    got, want = stream.finish(), log_mel(repeat_pad(x))
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4
    assert stream.n_samples == len(x) and stream.peak == float(np.abs(x).max())


def test_budget_mode_seeks_over_the_whole_of_a_long_file(long_files: dict[str, Path]) -> None:
    """It used to decode the first hour in full (3.5 GB) once a file declared an hour or more."""
    tw = extract_windows(long_files["mp3"], EngineConfig(budget=24))
    assert tw.seeked and tw.windows.shape == (24, N_FRAMES, 96)
    assert abs(tw.seconds - HOURS_3) < 60
    # The adaptive default: its first stage, spread over all three hours; later stages seek.
    tw = extract_windows(long_files["mp3"], EngineConfig())
    rule = AdaptiveBudget()
    assert tw.seeked and tw.windows.shape == (rule.first, N_FRAMES, 96) and tw.spare is None
    assert tw.count > 3600 and max(tw.starts) - min(tw.starts) > HOURS_3 / 2


@pytest.mark.parametrize("budget", [None, 24, AdaptiveBudget()],
                         ids=["all-windows", "unknown-length", "unknown-length-adaptive"])
def test_a_full_decode_is_capped_and_never_holds_the_audio(
        long_files: dict[str, Path], budget: int | AdaptiveBudget | None) -> None:
    """``--budget all``, and budget mode on a file whose length is unknown (Matroska), decode in
    full: only ``max_seconds`` of it, streamed into log-mel frames (3/8 of the audio's size) so the
    decoded audio is never in memory at once. tracemalloc sees numpy's buffers exactly."""
    cap = 1200.0
    tracemalloc.start()
    try:
        tw = extract_windows(long_files["mka"], EngineConfig(budget=budget, max_seconds=cap))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not tw.seeked and tw.seconds == cap
    every = len(plan_windows(int(cap * SAMPLE_RATE)).starts)  # 401 windows of 2.992 s
    if isinstance(budget, AdaptiveBudget):
        # The first stage, and only the windows later stages may take (not the frames).
        assert tw.windows.shape == (budget.first, N_FRAMES, 96) and tw.count == every
        assert tw.spare is not None and len(tw.spare) == budget.cap - budget.first
    else:
        assert tw.windows.shape == (every if budget is None else budget, N_FRAMES, 96)
    audio_bytes = cap * SAMPLE_RATE * 4
    assert peak < audio_bytes, f"{peak / 2**20:.0f} MiB traced for {audio_bytes / 2**20:.0f} MiB of audio"


def test_decode_stops_at_max_seconds(long_files: dict[str, Path]) -> None:
    assert len(decode(long_files["mka"], max_seconds=90)) == 90 * SAMPLE_RATE


def test_the_libsndfile_child_streams_and_stops_at_its_limit(tmp_path: Path) -> None:
    """The fallback decoder read the whole file into memory and wrote all of it."""
    flac = ffmpeg_encode(music_like(40.0), 44_100, tmp_path / "forty.flac", ["-c:a", "flac"])
    run = [sys.executable, "-m", "tagger.analysis.sndfile_child", str(flac), str(SAMPLE_RATE)]
    whole = np.frombuffer(subprocess.run(run, capture_output=True, check=True).stdout, np.float32)
    first = np.frombuffer(subprocess.run([*run, str(10 * SAMPLE_RATE)], capture_output=True,
                                         check=True).stdout, np.float32)
    assert len(first) == 10 * SAMPLE_RATE
    assert np.abs(first - whole[:len(first)]).max() < 1e-6
    main = decode(flac)
    assert len(whole) == len(main) and np.abs(whole - main).max() < 0.01


def test_the_libsndfile_child_says_one_plain_line(tmp_path: Path) -> None:
    f = tmp_path / "not-audio.wav"
    f.write_bytes(b"text, not a wave file\n" * 40)
    out = subprocess.run([sys.executable, "-m", "tagger.analysis.sndfile_child", str(f), str(SAMPLE_RATE)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == "Format not recognised.\n"
