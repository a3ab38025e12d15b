"""From an audio file to its analysis windows: decode (all, or only what the budget needs),
log-mel, window. I/O at the edge; the arithmetic lives in :mod:`tagger.analysis.features`.

Memory per file is bounded whatever its length: budget mode seeks to the windows it analyses
over the whole declared length; a full decode (``budget=None``, an unknown length, or a seek
that failed) streams into log-mel frames and stops after ``cfg.max_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.analysis.config import EngineConfig
from tagger.analysis.decode import check_readable, decode_segments, decode_stream, probe
from tagger.analysis.features import (
    HOP,
    N_FRAMES,
    SAMPLE_RATE,
    Float32Array,
    LogMelStream,
    cut_windows,
    log_mel_segment,
    plan_windows,
    window_starts,
)
from tagger.errors import SilentAudio, TooShort

#: Shorter than this is not music we can judge, even repeated to a full window.
MIN_SECONDS = 1.0
#: Peak amplitude below which a track counts as silent (-80 dBFS).
SILENCE_PEAK = 1e-4


@dataclass(frozen=True)
class TrackWindows:
    path: str
    windows: Float32Array  # (n, 187, 96)
    seconds: float  # audio length the windows were taken from
    seeked: bool  # True when only the budgeted segments were decoded
    starts: tuple[float, ...] = ()  # seconds from the track's start to each window's


def _check_signal(path: Path, n_samples: int, peak: float) -> None:
    if n_samples < MIN_SECONDS * SAMPLE_RATE:
        raise TooShort(path, f"only {n_samples / SAMPLE_RATE:.2f} s of audio "
                             f"(at least {MIN_SECONDS:g} s is needed)")
    if peak < SILENCE_PEAK:
        raise SilentAudio(path, "the audio is silent")


def extract_windows(path: str | Path, cfg: EngineConfig) -> TrackWindows:
    """Analysis windows of one file, or a typed :class:`tagger.errors.AudioError`."""
    path = Path(path)
    # First, before anything opens the file: a FIFO would block the header reader forever, and
    # a symlink to /dev/zero never ends.
    check_readable(path)
    info = probe(path)
    if cfg.budget is not None and info.declared:
        n_samples = int(info.declared * SAMPLE_RATE)
        n_windows = len(range(0, 1 + n_samples // HOP - N_FRAMES + 1, max(1, cfg.window_hop)))
        if n_windows > cfg.budget:
            plan = plan_windows(n_samples, cfg.window_hop, cfg.budget)
            pieces = decode_segments(path, plan.segments, cfg.decode_timeout)
            # Silent where we looked: decode in full before calling the file silent.
            if pieces is not None and max(float(np.max(np.abs(p))) for p in pieces) >= SILENCE_PEAK:
                windows = np.stack([log_mel_segment(p) for p in pieces])
                return TrackWindows(str(path), windows, info.declared, True,
                                    tuple(st * HOP / SAMPLE_RATE for st in plan.starts))
    stream = decode_stream(path, LogMelStream, cfg.decode_timeout, cfg.max_seconds, info)
    _check_signal(path, stream.n_samples, stream.peak)
    frames = stream.finish()
    starts = window_starts(len(frames), cfg.window_hop, cfg.budget)
    return TrackWindows(str(path), cut_windows(frames, starts), stream.n_samples / SAMPLE_RATE,
                        False, tuple(st * HOP / SAMPLE_RATE for st in starts))
