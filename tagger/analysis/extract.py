"""From an audio file to its analysis windows: decode (all, or only what the budget needs),
log-mel, window. I/O at the edge; the arithmetic lives in :mod:`tagger.analysis.features`.

Memory per file is bounded whatever its length: budget mode seeks to the windows it analyses
over the whole declared length; a full decode (``budget=None``, an unknown length, or a seek
that failed) streams into log-mel frames and stops after ``cfg.max_seconds``.

With the adaptive budget, :func:`extract_windows` gives the first stage's windows and
:func:`more_windows` the next ones: seeked again for a seekable file; for one decoded in full
(never decoded twice) every window the rule may ever ask for is cut at once and the frames are
let go, so an hour-long file holds at most ``cap`` windows (4.6 MB), not its frames (86 MB).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tagger.analysis.budget import AdaptiveBudget, order
from tagger.analysis.config import EngineConfig
from tagger.analysis.decode import (
    SegmentReader,
    check_readable,
    decode_segments,
    decode_stream,
    probe,
)
from tagger.analysis.features import (
    HOP,
    N_FRAMES,
    N_MELS,
    SAMPLE_RATE,
    Float32Array,
    LogMelStream,
    WindowPlan,
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
    #: Adaptive budget: the track's windows at ``cfg.window_hop`` (their grid), which of them
    #: these are, and where more come from: (decoded in full) the windows of the picks that
    #: follow, already cut, or (seeked) the declared length in samples to seek in again.
    count: int = 0
    picks: tuple[int, ...] = ()
    spare: Float32Array | None = None
    spare_from: int = 0  # ``spare[0]`` is the window of ``order(count)[spare_from]``
    n_samples: int = 0

    @property
    def grid(self) -> bool:
        """Whether :func:`more_windows` can add windows (an adaptive first stage)."""
        return self.count > 0


def _check_signal(path: Path, n_samples: int, peak: float) -> None:
    if n_samples < MIN_SECONDS * SAMPLE_RATE:
        raise TooShort(path, f"only {n_samples / SAMPLE_RATE:.2f} s of audio "
                             f"(at least {MIN_SECONDS:g} s is needed)")
    if peak < SILENCE_PEAK:
        raise SilentAudio(path, "the audio is silent")


def _grid_count(n_frames: int, hop: int) -> int:
    """Windows of a track with ``n_frames`` frames (arithmetic: a header may declare years)."""
    return (n_frames - N_FRAMES) // max(1, hop) + 1 if n_frames >= N_FRAMES else 0


def _seconds(frames: Iterable[int]) -> tuple[float, ...]:
    """Window starts in frames -> in seconds (what results and timelines show)."""
    return tuple(f * HOP / SAMPLE_RATE for f in frames)


def extract_windows(path: str | Path, cfg: EngineConfig,
                    reader: SegmentReader | None = None) -> TrackWindows:
    """Analysis windows of one file, or a typed :class:`tagger.errors.AudioError`.

    ``reader``: long-lived decoder children for the seeks (see :class:`SegmentReader`).
    """
    path = Path(path)
    # First, before anything opens the file: a FIFO would block the header reader forever, and
    # a symlink to /dev/zero never ends.
    check_readable(path)
    info = probe(path)
    adaptive, budget = ((cfg.budget, cfg.budget.first) if isinstance(cfg.budget, AdaptiveBudget)
                        else (None, cfg.budget))
    if budget is not None and info.declared:
        n_samples = int(info.declared * SAMPLE_RATE)
        n_frames = 1 + n_samples // HOP
        count = _grid_count(n_frames, cfg.window_hop)
        if count > budget:
            if adaptive:
                picks = tuple(order(count, budget))
                plan = WindowPlan(n_frames, tuple(p * max(1, cfg.window_hop) for p in picks))
            else:
                plan = plan_windows(n_samples, cfg.window_hop, budget)
            pieces = decode_segments(path, plan.segments, cfg.decode_timeout, reader)
            # Silent where we looked, or NaN: decode in full before calling the file silent (or
            # corrupt: the full decode says so).
            if pieces is not None and all(np.isfinite(p).all() for p in pieces) \
                    and max(float(np.max(np.abs(p))) for p in pieces) >= SILENCE_PEAK:
                windows = np.stack([log_mel_segment(p) for p in pieces])
                return TrackWindows(str(path), windows, info.declared, True,
                                    _seconds(plan.starts),
                                    count=count if adaptive else 0,
                                    picks=picks if adaptive else (), n_samples=n_samples)
    stream = decode_stream(path, LogMelStream, cfg.decode_timeout, cfg.max_seconds, info)
    _check_signal(path, stream.n_samples, stream.peak)
    frames = stream.finish()
    seconds = stream.n_samples / SAMPLE_RATE
    if adaptive:
        every = window_starts(len(frames), cfg.window_hop)
        if len(every) > adaptive.first:
            ahead = order(len(every), adaptive.cap)
            cut = cut_windows(frames, [every[i] for i in ahead])
            picks = tuple(ahead[:adaptive.first])
            return TrackWindows(str(path), cut[:len(picks)], seconds, False,
                                _seconds(every[i] for i in picks),
                                count=len(every), picks=picks, spare=cut[len(picks):],
                                spare_from=len(picks))
        budget = None
    starts = window_starts(len(frames), cfg.window_hop, budget)
    return TrackWindows(str(path), cut_windows(frames, starts), seconds, False,
                        _seconds(starts))


def more_windows(track: TrackWindows, n: int, cfg: EngineConfig,
                 reader: SegmentReader | None = None) -> TrackWindows:
    """The windows that take an adaptive track from ``len(track.picks)`` to ``n`` windows
    (a :class:`TrackWindows` of those only; ``picks`` lists every window so far).

    A seek that cannot be trusted (a short read) gives no windows: the caller decides with the
    windows it has, which are sound.
    """
    picks = tuple(order(track.count, n))
    new = picks[len(track.picks):]
    hop = max(1, cfg.window_hop)
    starts = [p * hop for p in new]
    if track.spare is not None:  # cut from the full decode, right after the first stage's
        first = track.spare_from
        windows = track.spare[len(track.picks) - first:len(picks) - first]
        if len(windows) < len(new):
            raise ValueError(f"{len(new)} more windows asked for; {len(windows)} were kept")
    else:
        plan = WindowPlan(1 + track.n_samples // HOP, tuple(starts))
        pieces = decode_segments(track.path, plan.segments, cfg.decode_timeout, reader)
        if pieces is None or not all(np.isfinite(p).all() for p in pieces):
            return replace(track, windows=np.zeros((0, N_FRAMES, N_MELS), np.float32),
                           starts=(), picks=track.picks)
        windows = np.stack([log_mel_segment(p) for p in pieces])
    return replace(track, windows=windows, starts=_seconds(starts),
                   picks=picks)
