"""From an audio file to its analysis windows: decode (all, or only what the budget needs),
log-mel, window. I/O at the edge; the arithmetic lives in :mod:`tagger.features`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger.config import EngineConfig
from tagger.decode import declared_duration, decode, decode_segments
from tagger.errors import SilentAudio, TooShort
from tagger.features import (
    SAMPLE_RATE,
    Float32Array,
    cut_windows,
    log_mel,
    log_mel_segment,
    plan_windows,
    repeat_pad,
    window_starts,
)

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


def _check_signal(path: Path, audio: Float32Array) -> None:
    if len(audio) < MIN_SECONDS * SAMPLE_RATE:
        raise TooShort(path, f"only {len(audio) / SAMPLE_RATE:.2f} s of audio "
                             f"(at least {MIN_SECONDS:g} s is needed)")
    if float(np.max(np.abs(audio))) < SILENCE_PEAK:
        raise SilentAudio(path, "the audio is silent")


def extract_windows(path: str | Path, cfg: EngineConfig) -> TrackWindows:
    """Analysis windows of one file, or a typed :class:`tagger.errors.AudioError`."""
    path = Path(path)
    if cfg.budget is not None:
        seconds, _ = declared_duration(path)
        if seconds and seconds < cfg.max_seconds:
            plan = plan_windows(int(seconds * SAMPLE_RATE), cfg.window_hop, None)
            if len(plan.starts) > cfg.budget:
                plan = plan_windows(int(seconds * SAMPLE_RATE), cfg.window_hop, cfg.budget)
                pieces = decode_segments(path, plan.segments, cfg.decode_timeout)
                if pieces is not None:
                    joined = np.concatenate(pieces)
                    if float(np.max(np.abs(joined))) >= SILENCE_PEAK:
                        windows = np.stack([log_mel_segment(p) for p in pieces])
                        return TrackWindows(str(path), windows, seconds, True)
                    # Silent where we looked: decode in full before calling the file silent.
    audio = decode(path, cfg.decode_timeout, cfg.max_seconds)
    _check_signal(path, audio)
    frames = log_mel(repeat_pad(audio))
    windows = cut_windows(frames, window_starts(len(frames), cfg.window_hop, cfg.budget))
    return TrackWindows(str(path), windows, len(audio) / SAMPLE_RATE, False)
