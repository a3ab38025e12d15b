"""Decoding only the windows' segments: long-lived libsndfile children
(:mod:`tagger.analysis.segment_server`) where the content is a format libsndfile reads, else one
ffmpeg call with a seek per segment."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import weakref
from contextlib import suppress
from pathlib import Path

import numpy as np

from tagger.analysis.decode.children import RESAMPLE, ffmpeg_path, kill, kill_all, run
from tagger.analysis.decode.probe import check_readable
from tagger.analysis.features import SAMPLE_RATE, Float32Array
from tagger.formats.kinds import KINDS
from tagger.formats.sniff import sniff

log = logging.getLogger(__name__)


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
        weakref.finalize(self, kill_all, self._all)

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
        timer = threading.Timer(timeout, kill, (proc,))
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
            kill(proc)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            with self._lock:
                self._all.discard(proc)
            return None
        finally:
            timer.cancel()
        with self._lock:
            if self._closed:
                kill(proc)
            else:
                self._idle.append(proc)
        return data

    def close(self) -> None:
        with self._lock:
            self._closed = True
            kill_all(self._all)
            self._idle.clear()


def _ffmpeg_segments(path: Path, segments: list[tuple[int, int]], timeout: float) -> bytes | None:
    cmd = [ffmpeg_path(), "-nostdin", "-hide_banner", "-v", "error"]
    graph = []
    for i, (start, count) in enumerate(segments):
        begin = max(start, 0)
        cmd += ["-ss", f"{begin / SAMPLE_RATE:.6f}", "-t", f"{count / SAMPLE_RATE + 0.05:.6f}",
                "-i", str(path)]
        graph.append(f"[{i}:a:0]{RESAMPLE},atrim=end_sample={count - (begin - start)}[s{i}]")
    inputs = "".join(f"[s{i}]" for i in range(len(segments)))
    graph.append(f"{inputs}concat=n={len(segments)}:v=0:a=1[out]")
    cmd += ["-filter_complex", ";".join(graph), "-map", "[out]", "-f", "f32le", "-"]
    out, _, rc = run(cmd, path, timeout)
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
