"""Log-mel features and analysis windows, exactly as the musicnn models were trained on them.

Pure numpy: no librosa at run time (it pulls numba and adds seconds of import), while the tests
check these numbers against ``librosa.feature.melspectrogram``. The STFT is centred with
reflect padding, as librosa 0.6/0.7 did when musicnn's training features were computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
N_FFT = 512
HOP = 256
N_MELS = 96
#: Frames per analysis window: librosa.time_to_frames(3 s) + 1, as musicnn computes it.
N_FRAMES = 187
#: Samples a window's frames depend on, once the STFT's centring is accounted for.
WINDOW_SAMPLES = (N_FRAMES - 1) * HOP + N_FFT
#: Shortest signal that yields one whole window from a centred STFT (1 + len // HOP >= 187).
MIN_SAMPLES = (N_FRAMES - 1) * HOP

Float32Array = npt.NDArray[np.float32]


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's auditory toolbox scale: linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mel = hz / f_sp
    above = hz >= min_log_hz
    mel[above] = min_log_mel + np.log(hz[above] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    hz = f_sp * mel
    above = mel >= min_log_mel
    hz[above] = min_log_hz * np.exp(logstep * (mel[above] - min_log_mel))
    return hz


@lru_cache(maxsize=1)
def mel_filterbank() -> Float32Array:
    """The (96, 257) slaney-normalised mel filterbank of ``librosa.filters.mel`` (htk=False)."""
    fftfreqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mels = np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([SAMPLE_RATE / 2]))[0],
                       N_MELS + 2)
    mel_f = _mel_to_hz(mels)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:N_MELS + 2] - mel_f[:N_MELS]))[:, None]
    return weights.astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> Float32Array:
    # Periodic Hann, as scipy.signal.get_window('hann', N_FFT, fftbins=True) gives librosa.
    n = np.arange(N_FFT)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)


def _frames_power(padded: Float32Array) -> Float32Array:
    n = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n, N_FFT), strides=(padded.strides[0] * HOP, padded.strides[0]),
        writeable=False)
    spec = np.fft.rfft(frames * _hann(), axis=1)
    return (spec.real**2 + spec.imag**2).astype(np.float32)


def _log_compress(power: Float32Array) -> Float32Array:
    mel = power @ mel_filterbank().T
    # float32 throughout: musicnn's own float16 cast overflows to +inf under NumPy 2.
    out: Float32Array = np.log10(np.float32(1) + np.float32(10000) * mel, dtype=np.float32)
    return out


def log_mel(audio: Float32Array) -> Float32Array:
    """(frames, 96) log-mel of a whole 16 kHz mono signal: ``log10(1 + 10000 * mel)``."""
    audio = np.asarray(audio, dtype=np.float32)
    pad = N_FFT // 2
    padded = np.pad(audio, pad, mode="reflect") if len(audio) > pad else np.pad(audio, pad, mode="constant")
    return _log_compress(_frames_power(padded))


def log_mel_segment(segment: Float32Array) -> Float32Array:
    """Log-mel frames of a segment decoded with its STFT context (no centring padding).

    A segment of ``WINDOW_SAMPLES`` starting ``HOP`` samples before a window's first frame gives
    the same 187 frames that :func:`log_mel` of the whole track gives for that window, which is
    what lets budget mode decode only the parts it analyses.
    """
    return _log_compress(_frames_power(np.asarray(segment, dtype=np.float32)))


class SignalSink:
    """Takes a decoded signal piece by piece and keeps its length, peak and finiteness.

    Decoders stream into a sink so that no caller has to hold a whole long file in memory.
    """

    def __init__(self) -> None:
        self.n_samples = 0
        self.peak = 0.0
        self.finite = True

    def feed(self, chunk: Float32Array) -> None:
        chunk = np.asarray(chunk, dtype=np.float32)
        if not len(chunk):
            return
        self.n_samples += len(chunk)
        if not np.isfinite(chunk).all():
            self.finite = False
        else:
            self.peak = max(self.peak, float(np.max(np.abs(chunk))))
        self._take(chunk)

    def _take(self, chunk: Float32Array) -> None:
        """What a subclass keeps of each piece."""


class LogMelStream(SignalSink):
    """:func:`log_mel` of ``repeat_pad(signal)``, computed as the signal arrives.

    Only the log-mel frames (96 floats per 256 samples: 3/8 of the audio's size) and one chunk of
    audio are kept, never the whole signal: a long file's audio is never in memory at once.
    Frames are the same as :func:`log_mel` of the whole signal (frame by frame: each depends only
    on its own 512 samples of the reflect-padded signal).
    """

    def __init__(self) -> None:
        super().__init__()
        self._head: list[Float32Array] = []  # the signal until it fills a window (repeat-pad)
        self._buf: Float32Array | None = None  # padded signal from the next frame's first sample
        self._tail = np.zeros(0, dtype=np.float32)  # the last N_FFT/2 + 1 samples (end padding)
        self._frames: list[Float32Array] = []

    def _take(self, chunk: Float32Array) -> None:
        self._tail = np.concatenate([self._tail, chunk[-(N_FFT // 2 + 1):]])[-(N_FFT // 2 + 1):]
        if self._buf is None:
            self._head.append(chunk)
            if self.n_samples < MIN_SAMPLES:
                return
            head = np.concatenate(self._head)
            self._head = []
            self._buf = np.concatenate([head[1:N_FFT // 2 + 1][::-1], head])  # reflect padding
        else:
            self._buf = np.concatenate([self._buf, chunk])
        self._frame()

    def _frame(self) -> None:
        assert self._buf is not None
        if len(self._buf) < N_FFT:
            return
        k = 1 + (len(self._buf) - N_FFT) // HOP
        self._frames.append(_log_compress(_frames_power(self._buf[:(k - 1) * HOP + N_FFT])))
        self._buf = self._buf[k * HOP:].copy()

    def finish(self) -> Float32Array:
        """All (frames, 96) log-mel frames; a signal shorter than a window is repeated first."""
        if self._buf is None:
            if not self._head:
                return np.zeros((0, N_MELS), dtype=np.float32)
            return log_mel(repeat_pad(np.concatenate(self._head)))
        self._buf = np.concatenate([self._buf, self._tail[:-1][::-1]])  # reflect padding
        self._frame()
        frames, self._frames = self._frames, []
        return np.concatenate(frames) if len(frames) > 1 else frames[0]


def repeat_pad(audio: Float32Array, min_samples: int = MIN_SAMPLES) -> Float32Array:
    """Repeat a short signal until it fills one window (musicnn's training ``repeat-pad``).

    musicnn's own tagger silently returns nothing for clips under 3 s; we analyse them instead.
    """
    if len(audio) == 0:
        raise ValueError("cannot pad an empty signal")
    if len(audio) >= min_samples:
        return audio
    reps = -(-min_samples // len(audio))
    return np.tile(audio, reps)


def window_starts(n_frames: int, hop: int = N_FRAMES, budget: int | None = None) -> list[int]:
    """First frame of each analysis window of a track with ``n_frames`` log-mel frames.

    Windows start every ``hop`` frames and the tail shorter than a window is dropped, as in
    musicnn. With a ``budget`` only that many windows are kept: the track is cut into ``budget``
    equal sections and the window at the centre of each is taken, so the whole track is
    represented without over-weighting its intro and fade-out.
    """
    if n_frames < N_FRAMES:
        return []
    hop = max(1, hop)
    count = (n_frames - N_FRAMES) // hop + 1  # window i starts at frame i * hop
    if budget is not None and count > budget:
        # Arithmetic, never the list of every start: a header may declare a length of years.
        picks = (np.arange(budget) + 0.5) * count / budget - 0.5
        return [round(float(p)) * hop for p in picks]
    return list(range(0, count * hop, hop))


def cut_windows(frames: Float32Array, starts: list[int]) -> Float32Array:
    """Stack the (187, 96) windows that begin at ``starts`` into one (windows, 187, 96) array."""
    if not starts:
        return np.zeros((0, N_FRAMES, N_MELS), dtype=np.float32)
    return np.stack([frames[s:s + N_FRAMES] for s in starts]).astype(np.float32, copy=False)


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of a track lie, in frames of the full-track log-mel."""

    n_frames: int
    starts: tuple[int, ...]

    @property
    def segments(self) -> list[tuple[int, int]]:
        """(first sample, sample count) of the audio each window needs, in track samples."""
        return [(s * HOP - N_FFT // 2, WINDOW_SAMPLES) for s in self.starts]


def plan_windows(n_samples: int, hop: int = N_FRAMES, budget: int | None = None) -> WindowPlan:
    """The windows a track of ``n_samples`` gets (its frame count as :func:`log_mel` makes it)."""
    n_frames = 1 + n_samples // HOP
    return WindowPlan(n_frames, tuple(window_starts(n_frames, hop, budget)))
