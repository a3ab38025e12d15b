"""Decode any audio file to 16 kHz mono float32, in a separate process, never writing to it.

ffmpeg (a pipe, resampling with soxr) is the main decoder: measured here it takes about half the
time of ``librosa.load``, and as a child process a hostile file that crashes or hangs it cannot
take us down. libsndfile (soundfile + soxr, also in a child process) is the fallback for files
ffmpeg rejects but libsndfile reads (ffmpeg 5.1 fails some Ogg Vorbis headers that libvorbis
accepts). For budget mode, :func:`decode_segments` seeks and decodes only the parts analysed.

Full decodes are streamed (:func:`decode_stream`): the decoder's output is handed on in chunks,
so what a caller keeps (log-mel frames, not audio) bounds the memory, whatever the file's length.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import numpy as np

from tagger.analysis.features import SAMPLE_RATE, Float32Array, SignalSink
from tagger.errors import (
    AudioError,
    CorruptAudio,
    DecoderCrashed,
    DecoderMissing,
    DecodeTimeout,
    EmptyAudio,
    EnvironmentProblem,
    NotAudio,
    TruncatedAudio,
    os_errors,
)
from tagger.formats.kinds import KINDS, SNDFILE_EXTENSIONS, label, mutagen_types
from tagger.formats.sniff import sniff

#: A decode shorter than this share of the container's declared length is called truncated...
TRUNCATION_RATIO = 0.9
#: ...and only when this many seconds are missing: codec delay and padding (up to ~0.2 s at low
#: sample rates) must never make a whole file look truncated ("0.1 s of the declared 0.1 s").
TRUNCATION_SLACK = 0.5
log = logging.getLogger(__name__)
_RESAMPLE = f"aresample={SAMPLE_RATE}:resampler=soxr,aformat=sample_fmts=flt:channel_layouts=mono"
_DECODE_ERRORS = ("Error while decoding", "Invalid data", "invalid residual", "decode_frame")
#: Bytes of decoder output handed on at a time (10 s of 16 kHz float32).
_CHUNK_BYTES = 10 * SAMPLE_RATE * 4
#: Decoder messages kept (the first and the last this many bytes): enough to explain a failure.
_STDERR_KEEP = 64 * 1024


# --- the decoder itself ---------------------------------------------------------------------------



def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DecoderMissing("ffmpeg was not found on PATH; install it (e.g. apt install ffmpeg)")
    return exe


def decoder_version() -> str:
    """The decoder's version line (``ffmpeg version 5.1.8-0+deb12u1 ...``): analysis failures
    recorded under another one are retried, since a newer ffmpeg may read the file."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return "no ffmpeg"
    try:
        return _working_version(exe)
    except EnvironmentProblem:
        return "broken ffmpeg"


def check_decoder() -> str:
    """Raise :class:`EnvironmentProblem` if ffmpeg is missing or broken; return its path.

    Front doors call it at start so that a machine without a working ffmpeg stops with one clear
    line instead of blaming every file; decoding calls it again (cheaply) before calling a file
    unreadable.
    """
    exe = _ffmpeg()
    _working_version(exe)
    return exe


@functools.lru_cache(maxsize=4)
def _working_version(exe: str) -> str:
    """``exe -version``, run once per executable while it works (a failure is not cached, so a
    repaired ffmpeg is seen): its first line."""
    try:
        done = subprocess.run([exe, "-hide_banner", "-version"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"ffmpeg is broken: {exe} -version did not answer in 30 s") from None
    except OSError as e:
        raise EnvironmentProblem(f"ffmpeg is broken: {exe} cannot be run ({e.strerror or e})") from None
    if done.returncode != 0 or not done.stdout.startswith(b"ffmpeg version"):
        status = (f"was killed by {signal.Signals(-done.returncode).name}" if done.returncode < 0
                  else f"exited with status {done.returncode}")
        said = _last_line(done.stderr.decode("utf-8", "replace"))
        raise EnvironmentProblem(f"ffmpeg is broken: {exe} -version {status}"
                                 + (f" ({said})" if said != "unknown error" else ""))
    return done.stdout.decode("utf-8", "replace").partition("\n")[0][:120]


_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_readable(path: Path) -> None:
    """Raise the precise error for a file we cannot even open.

    ``os.stat`` (which follows symlinks) comes before any ``open``: opening a FIFO blocks until a
    writer comes, and a symlink to ``/dev/zero`` never ends.
    """
    with os_errors(path, "reach"):
        st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise NotAudio(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "a special file")
        via = " (through a symlink)" if os.path.islink(path) else ""
        raise NotAudio(path, f"not a regular file: it is {what}{via}, not audio")
    with os_errors(path, "read"), open(path, "rb") as fh:
        first = fh.read(1)
    if not first:
        raise EmptyAudio(path, "the file is empty (0 bytes)")


# --- what the file declares (headers only) --------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What a file's headers say, read without decoding."""

    kind: str | None  # from the first bytes (see :func:`sniff`); None: no audio format we know
    declared: float | None  # seconds the container declares
    exact: bool  # whether ``declared`` is exact enough to judge truncation by


def _mutagen_length(path: Path, kind: str | None) -> tuple[float | None, bool]:
    """The length the headers declare (mutagen decodes nothing), and whether it is exact."""
    import mutagen
    from mutagen.aac import AAC
    from mutagen.mp3 import MP3, BitrateMode

    # The content decides the parser, not the name: a FLAC called .mp3 has a FLAC's length.
    options = mutagen_types(kind or "")
    f = mutagen.File(path, options=options) if options else mutagen.File(path)
    length = float(getattr(f.info, "length", 0) or 0) if f is not None else 0.0
    if not (0 < length < math.inf):  # absent, zero, NaN or infinite: unknown
        return None, False
    # MP3 without a Xing/VBRI/LAME header and ADTS AAC only estimate their length from bitrates.
    estimated = isinstance(f, AAC) or (
        isinstance(f, MP3) and getattr(f.info, "bitrate_mode", None) == BitrateMode.UNKNOWN)
    return length, not estimated


def _ogg_ending(path: Path) -> str | None:
    """How an Ogg file ends: ``"cut"`` mid-page, ``"no-eos"`` without the end-of-stream flag.

    Ogg declares no length up front, and mutagen's comes from the last page it finds, so a cut
    file looks complete. Walks the page headers (27 bytes + segment table each, no payload) from
    the start; None when the file ends properly or holds something else after its pages (an
    appended tag: then nothing can be said).
    """
    with os_errors(path, "read"), open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        pos, flags = 0, 0
        while pos < size:
            fh.seek(pos)
            head = fh.read(27 + 255)
            if len(head) < 27:
                return "cut" if b"OggS".startswith(head[:4]) else None
            if head[:4] != b"OggS" or head[4] != 0:
                return None
            n = head[26]
            if len(head) < 27 + n:
                return "cut"
            flags = head[5]
            pos += 27 + n + sum(head[27:27 + n])
        if pos > size:
            return "cut"
        return None if flags & 0x04 else "no-eos"


def probe(path: str | Path) -> Probe:
    """Read what the headers say; a cut Ogg file raises :class:`TruncatedAudio` here already."""
    path = Path(path)
    check_readable(path)
    kind = sniff(path)
    try:
        declared, exact = _mutagen_length(path, kind)
    except Exception:  # mutagen's errors (even Python's own) only mean the length is unknown
        declared, exact = None, False
    if kind == "Ogg":
        ending = _ogg_ending(path)
        stops = f"its audio stops after {declared:.1f} s" if declared else "it stops before any audio"
        if ending == "cut":
            raise TruncatedAudio(path, f"the file is truncated: {stops}, part-way through a block of "
                                       "data (the last Ogg page is cut short)")
        if ending == "no-eos":
            raise TruncatedAudio(path, f"the file is truncated: {stops}, without the end-of-stream "
                                       "mark that ends every complete Ogg file")
    return Probe(kind, declared, exact)


# --- running decoder children ---------------------------------------------------------------------


def _spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
    """Start a decoder child; failing to start one is the machine's problem, never the file's."""
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except FileNotFoundError:
        raise DecoderMissing(f"the decoder {cmd[0]} was not found; install ffmpeg "
                             "(e.g. apt install ffmpeg)") from None
    except OSError as e:
        raise EnvironmentProblem(f"cannot start the decoder {cmd[0]}: {e.strerror or e}") from None


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)


def _run(cmd: list[str], path: Path, timeout: float) -> tuple[bytes, str, int]:
    """Run a decoder child; a hang is killed at ``timeout``, a crash becomes an error."""
    proc = _spawn(cmd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        proc.communicate()
        raise DecodeTimeout(path, f"decoding took longer than {timeout:g} s and was stopped") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise DecoderCrashed(path, f"the decoder crashed ({name})")
    return out, _text(err, path), proc.returncode


class _Stderr(threading.Thread):
    """Drains a child's stderr (a full pipe would stall it), keeping its first and last part."""

    def __init__(self, pipe: IO[bytes] | None) -> None:
        super().__init__(daemon=True)
        assert pipe is not None
        self.fd, self.head, self.tail = pipe.fileno(), bytearray(), bytearray()

    def run(self) -> None:
        for block in iter(lambda: os.read(self.fd, 65536), b""):
            if len(self.head) < _STDERR_KEEP:
                self.head += block
            else:
                self.tail = (self.tail + block)[-_STDERR_KEEP:]

    def text(self, path: Path) -> str:
        return _text(bytes(self.head + (b"\n" if self.tail else b"") + self.tail), path)


def _stream(cmd: list[str], path: Path, timeout: float, max_samples: int,
            sink: SignalSink) -> tuple[str, int]:
    """Run a decoder child, feeding its f32le output to ``sink`` as it comes.

    At most ``max_samples`` are taken (the child is then stopped); a hang is killed at
    ``timeout``. Returns the decoder's messages and its exit status (0 when we stopped it).
    """
    proc = _spawn(cmd)
    expired = threading.Event()

    def expire() -> None:
        if proc.poll() is None:
            expired.set()
            _kill(proc)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    errors = _Stderr(proc.stderr)
    errors.start()
    timer.start()
    stopped = False
    try:
        assert proc.stdout is not None
        left, carry = max_samples, b""
        while left > 0:
            data = proc.stdout.read(_CHUNK_BYTES)
            if not data:
                break
            data = carry + data
            cut = len(data) // 4 * 4  # whole float32 samples; the rest waits for the next read
            samples, carry = np.frombuffer(data[:cut], dtype=np.float32)[:left], data[cut:]
            left -= len(samples)
            sink.feed(samples)
        if left <= 0:  # enough: the rest of a very long file is not needed
            stopped = True
            _kill(proc)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            _kill(proc)
            proc.wait()
        errors.join()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    if expired.is_set():
        raise DecodeTimeout(path, f"decoding took longer than {timeout:g} s and was stopped")
    if stopped:
        return errors.text(path), 0
    if rc < 0:
        raise DecoderCrashed(path, f"the decoder crashed ({signal.Signals(-rc).name})")
    return errors.text(path), rc


def _text(stderr: bytes, path: Path) -> str:
    """A decoder's messages as text, without the file's name (which ffmpeg repeats, in bytes
    that may not even be UTF-8, or hold newlines)."""
    return stderr.replace(os.fsencode(path), b"").decode("utf-8", "replace")


def _lines(stderr: str) -> list[str]:
    """The decoder's lines without their ``[demuxer @ 0x...]`` prefix or the file's name."""
    lines = [re.sub(r"^\[[^]]*@ 0x[0-9a-f]+\]\s*", "", ln.strip()) for ln in stderr.splitlines()]
    return [ln.lstrip(": ").strip() for ln in lines if ln.lstrip(": ").strip()]


def _last_line(stderr: str) -> str:
    """The decoder's most telling line."""
    lines = _lines(stderr)
    return lines[-1] if lines else "unknown error"


def _first_line(stderr: str) -> str:
    lines = _lines(stderr)
    return lines[0] if lines else "unknown error"


def _unreadable(path: Path, kind: str | None, stderr: str) -> AudioError:
    """The error for a file ffmpeg refused, worded by what the file's first bytes say it is."""
    if "matches no streams" in stderr or "does not contain any stream" in stderr:
        return NotAudio(path, "no audio stream in the file")
    said = _first_line(stderr)
    if kind is None:
        return NotAudio(path, f"not an audio file ffmpeg can read ({said})")
    ext = path.suffix.lower()
    if ext and ext not in KINDS[kind].extensions:
        return CorruptAudio(path, f"the extension {ext} does not match the content ({kind}), and "
                                  f"ffmpeg cannot read it ({said})")
    part = "container" if KINDS[kind].container else "data"
    return CorruptAudio(path, f"the {label(kind, path)} {part} is damaged ({said})")


# --- full decodes ---------------------------------------------------------------------------------

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
    ffmpeg = _ffmpeg()
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-i", str(path),
           "-map", "0:a:0", "-vn", "-t", f"{max_seconds:g}", "-af", _RESAMPLE, "-f", "f32le", "-"]
    sink = new_sink()
    stderr, rc = _stream(cmd, path, timeout, max_samples, sink)
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
            stderr, rc = _stream(cmd, path, timeout, max_samples, sink)
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
                                     f"decoded ({_last_line(stderr)})")
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


class SegmentReader:
    """Long-lived libsndfile children (:mod:`tagger.analysis.segment_server`) that decode the
    segments of the analysis windows: at most one per decoding thread, started by :meth:`warm`
    or on first use.

    Only for files whose content libsndfile reads; any trouble (libsndfile refuses the file, the
    child crashes, a request outlasts its timeout) gives ``None`` and :func:`decode_segments`
    asks ffmpeg instead, so every error a person sees is still ffmpeg's, said as before. A child
    that misbehaved is killed; the next request starts a fresh one. Children end with their
    standard input: when this process ends, however it ends, they do too.
    """

    def __init__(self) -> None:
        self._idle: list[subprocess.Popen[bytes]] = []
        self._all: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._closed = False
        #: Children started, and requests ffmpeg had to answer instead (for logs and tests).
        self.started = 0
        self.fallbacks = 0
        weakref.finalize(self, _kill_all, self._all)

    def children(self) -> list[int]:
        """Process ids of the children alive now."""
        with self._lock:
            return [p.pid for p in self._all if p.poll() is None]

    def warm(self, n: int) -> None:
        """Start ``n`` children now, so that they load while the model does (a fifth of a
        second each, which a one-file ``predict`` would otherwise wait for)."""
        for _ in range(n):
            with suppress(OSError):
                proc = self._start()
                with self._lock:
                    self._idle.append(proc)

    def count_fallback(self) -> None:
        """A request ffmpeg answered instead (a refusal, a dead child, an unusable answer)."""
        with self._lock:
            self.fallbacks += 1

    def _start(self) -> subprocess.Popen[bytes]:
        if self._closed:
            raise OSError("the segment reader is closed")
        proc = subprocess.Popen([sys.executable, "-m", "tagger.analysis.segment_server"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        with self._lock:
            self._all.add(proc)
            self.started += 1
        return proc

    def _take(self) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._closed:
                raise OSError("the segment reader is closed")
            while self._idle:
                proc = self._idle.pop()
                if proc.poll() is None:
                    return proc
                self._all.discard(proc)
        return self._start()

    def read(self, path: Path, segments: list[tuple[int, int]], timeout: float) -> bytes | None:
        """The segments' samples, concatenated as ffmpeg gives them, or None."""
        try:
            proc = self._take()
        except OSError:
            return None
        timer = threading.Timer(timeout, _kill, (proc,))
        timer.start()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            request = {"path": os.fsencode(path).hex(), "rate": SAMPLE_RATE,
                       "segments": [list(seg) for seg in segments]}
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline() or b"null")
            if not isinstance(answer, dict):
                raise OSError("the segment decoder ended")
            if not answer.get("ok"):
                log.debug("libsndfile on %s: %s; ffmpeg decodes it", path, answer.get("error"))
                data = None
            else:
                size = 4 * sum(int(n) for n in answer["lengths"])
                data = proc.stdout.read(size)
                if len(data) != size:
                    raise OSError("the segment decoder ended mid-answer")
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.debug("segment decoder on %s: %s", path, e)
            _kill(proc)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            with self._lock:
                self._all.discard(proc)
            return None
        finally:
            timer.cancel()
        with self._lock:
            if self._closed:
                _kill(proc)
            else:
                self._idle.append(proc)
        return data

    def close(self) -> None:
        with self._lock:
            self._closed = True
            _kill_all(self._all)
            self._idle.clear()


def _kill_all(procs: set[subprocess.Popen[bytes]]) -> None:
    for proc in list(procs):
        with suppress(OSError):
            if proc.stdin:
                proc.stdin.close()  # a child that is idle ends by itself
        if proc.poll() is None:  # never signal a process id that may have been reused
            _kill(proc)
        with suppress(subprocess.TimeoutExpired, OSError):
            proc.wait(timeout=5)
    procs.clear()


def _ffmpeg_segments(path: Path, segments: list[tuple[int, int]], timeout: float) -> bytes | None:
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
    return out if rc == 0 else None


#: A request to the segment children may take this long at most (ffmpeg still gets the file's
#: whole timeout after it): a few seconds of audio never need more.
READER_TIMEOUT = 30.0


def decode_segments(path: str | Path, segments: list[tuple[int, int]],
                    timeout: float = 60.0, reader: SegmentReader | None = None,
                    ) -> list[Float32Array] | None:
    """Decode only ``(first sample, count)`` segments (16 kHz samples): with ``reader``'s
    libsndfile children where the content is a format libsndfile reads, else (or when their
    answer cannot be used) in one ffmpeg call.

    Returns one array of ``count`` samples per segment, in the order asked (a first segment that
    starts before 0 is reflect-padded, a last one that runs past the end is zero-padded), or
    ``None`` when the result cannot be trusted (a short read inside the file): a first stage
    then decodes in full, which reports truncation properly; a later one keeps what it has.
    """
    path = Path(path)
    check_readable(path)
    # In time order: only the last segment may run past the end of the audio (a declared length
    # a little too long), and the pieces come back as one stream.
    in_time = sorted(range(len(segments)), key=lambda i: segments[i][0])
    ordered = [segments[i] for i in in_time]
    if reader is not None and (kind := sniff(path)) is not None and KINDS[kind].sndfile:
        data = reader.read(path, ordered, min(timeout, READER_TIMEOUT))
        pieces = _split(data, ordered) if data is not None else None
        if pieces is not None:
            return [pieces[in_time.index(i)] for i in range(len(segments))]
        reader.count_fallback()
    data = _ffmpeg_segments(path, ordered, timeout)
    pieces = _split(data, ordered) if data is not None else None
    return None if pieces is None else [pieces[in_time.index(i)] for i in range(len(segments))]


def _split(data: bytes, segments: list[tuple[int, int]]) -> list[Float32Array] | None:
    """One decoder's stream of ``segments`` (in time order) cut back into its pieces."""
    flat = np.frombuffer(data, dtype=np.float32)
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
