"""Decode any audio file to 16 kHz mono float32, in a separate process, never writing to it.

ffmpeg (a pipe, resampling with soxr) is the main decoder: measured here it takes about half the
time of ``librosa.load``, and as a child process a hostile file that crashes or hangs it cannot
take us down. libsndfile (soundfile + soxr, also in a child process) is the fallback for files
ffmpeg rejects but libsndfile reads (ffmpeg 5.1 fails some Ogg Vorbis headers that libvorbis
accepts). For budget mode, :func:`decode_segments` seeks and decodes only the parts analysed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tagger.errors import (
    CorruptAudio,
    DecoderCrashed,
    DecoderMissing,
    DecodeTimeout,
    EmptyAudio,
    MissingFile,
    NoPermission,
    NotAudio,
    TruncatedAudio,
)
from tagger.features import SAMPLE_RATE, Float32Array

#: A decode shorter than this share of the container's declared length is called truncated.
TRUNCATION_RATIO = 0.9
_RESAMPLE = f"aresample={SAMPLE_RATE}:resampler=soxr,aformat=sample_fmts=flt:channel_layouts=mono"
_DECODE_ERRORS = ("Error while decoding", "Invalid data", "invalid residual", "decode_frame")
SNDFILE_EXTENSIONS = {".ogg", ".oga", ".flac", ".wav", ".aif", ".aiff", ".mp3", ".opus"}


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DecoderMissing("ffmpeg was not found on PATH; install it (e.g. apt install ffmpeg)")
    return exe


@contextmanager
def _os_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn the OS's reasons for not reaching a file into typed, worded errors."""
    try:
        yield
    except FileNotFoundError:
        raise MissingFile(path, "no such file") from None
    except PermissionError:
        raise NoPermission(path, f"permission denied (cannot {doing} the file)") from None
    except IsADirectoryError:
        raise NotAudio(path, "is a directory") from None
    except OSError as e:
        raise CorruptAudio(path, f"cannot {doing} the file: {e.strerror or e}") from None


def check_readable(path: Path) -> None:
    """Raise the precise error for a file we cannot even open."""
    with _os_errors(path, "reach"):
        st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise NotAudio(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        raise NotAudio(path, "not a regular file")
    with _os_errors(path, "read"), open(path, "rb") as fh:
        first = fh.read(1)
    if not first:
        raise EmptyAudio(path, "the file is empty (0 bytes)")


def declared_duration(path: Path) -> tuple[float | None, bool]:
    """The length the container declares, and whether it is exact enough to judge truncation.

    mutagen reads only headers (no decoding). MP3 without a Xing/VBRI/LAME header only estimates
    its length from the first frame's bitrate, so that estimate is not trusted.
    """
    try:
        import mutagen
        from mutagen.mp3 import MP3, BitrateMode

        f = mutagen.File(path)
        if f is None or not getattr(f.info, "length", 0):
            return None, False
        exact = not (isinstance(f, MP3) and getattr(f.info, "bitrate_mode", None) == BitrateMode.UNKNOWN)
        return float(f.info.length), exact
    except Exception:
        return None, False


def _run(cmd: list[str], path: Path, timeout: float) -> tuple[bytes, str, int]:
    """Run a decoder child; a hang is killed at ``timeout``, a crash becomes an error."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DecodeTimeout(path, f"decoding took longer than {timeout:g} s and was stopped") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise DecoderCrashed(path, f"the decoder crashed ({name})")
    return out, err.decode("utf-8", "replace"), proc.returncode


def _last_line(stderr: str) -> str:
    """The decoder's most telling line, without its ``[demuxer @ 0x...]`` prefix."""
    lines = [re.sub(r"^\[[^]]*@ 0x[0-9a-f]+\]\s*", "", ln.strip()) for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else "unknown error"


def _first_line(stderr: str) -> str:
    lines = [re.sub(r"^\[[^]]*@ 0x[0-9a-f]+\]\s*", "", ln.strip()) for ln in stderr.splitlines()]
    return next((ln for ln in lines if ln), "unknown error")


def _ffmpeg_full(path: Path, timeout: float, max_seconds: float) -> tuple[Float32Array, str]:
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
           "-map", "0:a:0", "-vn", "-t", f"{max_seconds:g}", "-af", _RESAMPLE,
           "-f", "f32le", "-"]
    out, err, rc = _run(cmd, path, timeout)
    if rc != 0:
        if "matches no streams" in err or "does not contain any stream" in err:
            raise NotAudio(path, "no audio stream in the file")
        raise NotAudio(path, f"not an audio file ffmpeg can read ({_first_line(err)})")
    return np.frombuffer(out, dtype=np.float32).copy(), err


def _sndfile_full(path: Path, timeout: float) -> Float32Array:
    cmd = [sys.executable, "-m", "tagger.sndfile_child", str(path), str(SAMPLE_RATE)]
    out, err, rc = _run(cmd, path, timeout)
    if rc != 0:
        raise NotAudio(path, f"libsndfile cannot read it ({_last_line(err)})")
    return np.frombuffer(out, dtype=np.float32).copy()


def decode(path: str | Path, timeout: float = 120.0, max_seconds: float = 3600.0) -> Float32Array:
    """The file (its first ``max_seconds``) as 16 kHz mono float32, or an ``AudioError``."""
    path = Path(path)
    check_readable(path)
    try:
        audio, stderr = _ffmpeg_full(path, timeout, max_seconds)
    except NotAudio as ffmpeg_error:
        if path.suffix.lower() not in SNDFILE_EXTENSIONS:
            raise
        try:
            audio, stderr = _sndfile_full(path, timeout)[:int(max_seconds * SAMPLE_RATE)], ""
        except NotAudio:
            raise ffmpeg_error from None
    if len(audio) == 0:
        raise EmptyAudio(path, "the file holds no audio samples (zero length)")
    if not np.isfinite(audio).all():
        raise CorruptAudio(path, "the decoder produced NaN or infinite samples")
    declared, exact = declared_duration(path)
    got = len(audio) / SAMPLE_RATE
    if declared and declared < max_seconds and got < TRUNCATION_RATIO * declared:
        errors = any(marker in stderr for marker in _DECODE_ERRORS)
        if errors:
            raise CorruptAudio(path, f"decoding failed part-way: {got:.1f} s of {declared:.1f} s "
                                     f"decoded ({_last_line(stderr)})")
        if exact:
            raise TruncatedAudio(path, f"the file is truncated: {got:.1f} s of the declared "
                                       f"{declared:.1f} s could be decoded")
    return audio


def decode_segments(path: str | Path, segments: list[tuple[int, int]],
                    timeout: float = 60.0) -> list[Float32Array] | None:
    """Decode only ``(first sample, count)`` segments (16 kHz samples) in one ffmpeg call.

    Returns one array of ``count`` samples per segment (a first segment that starts before 0 is
    reflect-padded, a last one that runs past the end is zero-padded), or ``None`` when the
    result cannot be trusted (a short read inside the file): callers then decode in full, which
    reports truncation properly.
    """
    path = Path(path)
    check_readable(path)
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-v", "error"]
    graph = []
    for i, (start, count) in enumerate(segments):
        begin = max(start, 0)
        cmd += ["-ss", f"{begin / SAMPLE_RATE:.6f}", "-t", f"{count / SAMPLE_RATE + 0.05:.6f}",
                "-i", str(path)]
        graph.append(f"[{i}:a:0]{_RESAMPLE},atrim=end_sample={count - (begin - start)}[s{i}]")
    inputs = "".join(f"[s{i}]" for i in range(len(segments)))
    graph.append(f"{inputs}concat=n={len(segments)}:v=0:a=1[out]")
    cmd += ["-filter_complex", ";".join(graph), "-map", "[out]", "-f", "f32le", "-"]
    out, _, rc = _run(cmd, path, timeout)
    if rc != 0:
        return None
    flat = np.frombuffer(out, dtype=np.float32)
    pieces: list[Float32Array] = []
    pos = 0
    for i, (start, count) in enumerate(segments):
        want = count - (max(start, 0) - start)
        piece = flat[pos:pos + want]
        pos += len(piece)
        if len(piece) < want:
            if i != len(segments) - 1 or len(piece) < want - 2 * 256:
                return None
            piece = np.pad(piece, (0, want - len(piece)))
        if start < 0:
            piece = np.pad(piece, (-start, 0), mode="reflect")
        pieces.append(piece.astype(np.float32, copy=True))
    return pieces
