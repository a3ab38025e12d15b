"""Whole-file decodes, streamed: ffmpeg first, libsndfile (a child too) for the files ffmpeg
refuses and libsndfile reads; the decode is judged against what the headers declared (empty,
NaN, cut short, damaged part-way), and a refusal is worded by what the file's bytes say it is."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from tagger.analysis.decode.children import (
    RESAMPLE,
    check_decoder,
    ffmpeg_path,
    first_line,
    last_line,
    stream,
)
from tagger.analysis.decode.probe import Probe, probe
from tagger.analysis.features import SAMPLE_RATE, Float32Array, SignalSink
from tagger.errors import AudioError, CorruptAudio, EmptyAudio, NotAudio, TruncatedAudio
from tagger.formats.kinds import KINDS, SNDFILE_EXTENSIONS, label

#: A decode shorter than this share of the container's declared length is called truncated...
TRUNCATION_RATIO = 0.9
#: ...and only when this many seconds are missing: codec delay and padding (up to ~0.2 s at low
#: sample rates) must never make a whole file look truncated ("0.1 s of the declared 0.1 s").
TRUNCATION_SLACK = 0.5
_DECODE_ERRORS = ("Error while decoding", "Invalid data", "invalid residual", "decode_frame")


def _unreadable(path: Path, kind: str | None, stderr: str) -> AudioError:
    """The error for a file ffmpeg refused, worded by what the file's first bytes say it is."""
    if "matches no streams" in stderr or "does not contain any stream" in stderr:
        return NotAudio(path, "no audio stream in the file")
    said = first_line(stderr)
    if kind is None:
        return NotAudio(path, f"not an audio file ffmpeg can read ({said})")
    ext = path.suffix.lower()
    if ext and ext not in KINDS[kind].extensions:
        return CorruptAudio(path, f"the extension {ext} does not match the content ({kind}), and "
                                  f"ffmpeg cannot read it ({said})")
    part = "container" if KINDS[kind].container else "data"
    return CorruptAudio(path, f"the {label(kind, path)} {part} is damaged ({said})")


SinkT = TypeVar("SinkT", bound=SignalSink)


def decode_stream(path: str | Path, new_sink: Callable[[], SinkT], timeout: float = 120.0,
                  max_seconds: float = 3600.0, info: Probe | None = None) -> SinkT:
    """Decode the file's first ``max_seconds`` into a sink, or raise an ``AudioError``.

    Memory stays bounded by what the sink keeps. A file ffmpeg refuses is tried with libsndfile
    (into a fresh sink) when its content is a format libsndfile reads.
    """
    path = Path(path)
    if info is None:
        info = probe(path)
    max_samples = int(max_seconds * SAMPLE_RATE)
    ffmpeg = ffmpeg_path()
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
           "-map", "0:a:0", "-vn", "-t", f"{max_seconds:g}", "-af", RESAMPLE, "-f", "f32le", "-"]
    sink = new_sink()
    stderr, rc = stream(cmd, path, timeout, max_samples, sink)
    if rc != 0:
        check_decoder()  # a broken ffmpeg fails on every file: say so instead of blaming this one
        ffmpeg_error = _unreadable(path, info.kind, stderr)
        sndfile = KINDS[info.kind].sndfile if info.kind else path.suffix.lower() in SNDFILE_EXTENSIONS
        if not sndfile:
            raise ffmpeg_error
        cmd = [sys.executable, "-m", "tagger.analysis.sndfile_child", str(path), str(SAMPLE_RATE),
               str(max_samples)]
        sink = new_sink()
        try:
            stderr, rc = stream(cmd, path, timeout, max_samples, sink)
        except AudioError:
            raise ffmpeg_error from None
        if rc != 0:
            raise ffmpeg_error
        stderr = ""
    if sink.n_samples == 0:
        raise EmptyAudio(path, "the file holds no audio samples (zero length)")
    if not sink.finite:
        raise CorruptAudio(path, "the decoder produced NaN or infinite samples")
    got = sink.n_samples / SAMPLE_RATE
    expected = min(info.declared, max_seconds) if info.declared else 0.0
    if info.declared and got < TRUNCATION_RATIO * expected and expected - got >= TRUNCATION_SLACK:
        if any(marker in stderr for marker in _DECODE_ERRORS):
            raise CorruptAudio(path, f"decoding failed part-way: {_span(got)} of {_span(info.declared)} "
                                     f"decoded ({last_line(stderr)})")
        if info.exact:
            raise TruncatedAudio(path, f"the file is truncated: {_span(got)} of the declared "
                                       f"{_span(info.declared)} could be decoded")
    return sink


def _span(seconds: float) -> str:
    """Seconds as a person reads them: ``12.3 s``, or ``2.5 h`` for a long file."""
    return f"{seconds:.1f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h"


class _Collect(SignalSink):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[Float32Array] = []

    def _take(self, chunk: Float32Array) -> None:
        self.chunks.append(chunk)


def decode(path: str | Path, timeout: float = 120.0, max_seconds: float = 3600.0) -> Float32Array:
    """The file (its first ``max_seconds``) as 16 kHz mono float32, or an ``AudioError``.

    Holds the whole signal: the engine uses :func:`decode_stream` instead.
    """
    chunks = decode_stream(path, _Collect, timeout, max_seconds).chunks
    return np.concatenate(chunks).astype(np.float32, copy=False)
