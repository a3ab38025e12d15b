"""Running decoder children: finding and checking ffmpeg, starting a child in its own session,
running it to the end or streaming its output, killing it on a timeout, and reading its messages.

A decoder is always a child process: a hostile file that crashes or hangs it cannot take us down,
and failing to start one is the machine's problem, never the file's.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import threading
from contextlib import suppress
from pathlib import Path
from typing import IO

import numpy as np

from tagger.analysis.features import SAMPLE_RATE, SignalSink
from tagger.errors import DecoderCrashed, DecoderMissing, DecodeTimeout, EnvironmentProblem

#: ffmpeg's filter to the analysis rate: 16 kHz mono float32, resampled with soxr.
RESAMPLE = f"aresample={SAMPLE_RATE}:resampler=soxr,aformat=sample_fmts=flt:channel_layouts=mono"
#: Bytes of decoder output handed on at a time (10 s of 16 kHz float32).
_CHUNK_BYTES = 10 * SAMPLE_RATE * 4
#: Decoder messages kept (the first and the last this many bytes): enough to explain a failure.
_STDERR_KEEP = 64 * 1024


def ffmpeg_path() -> str:
    """Where ffmpeg is (DecoderMissing, the machine's problem, when it is not on PATH)."""
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
    exe = ffmpeg_path()
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
        said = last_line(done.stderr.decode("utf-8", "replace"))
        raise EnvironmentProblem(f"ffmpeg is broken: {exe} -version {status}"
                                 + (f" ({said})" if said != "unknown error" else ""))
    return done.stdout.decode("utf-8", "replace").partition("\n")[0][:120]


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


def kill(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)


def run(cmd: list[str], path: Path, timeout: float) -> tuple[bytes, str, int]:
    """Run a decoder child; a hang is killed at ``timeout``, a crash becomes an error."""
    proc = _spawn(cmd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
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


def stream(cmd: list[str], path: Path, timeout: float, max_samples: int,
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
            kill(proc)

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
            kill(proc)
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill(proc)
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


def last_line(stderr: str) -> str:
    """The decoder's most telling line."""
    lines = _lines(stderr)
    return lines[-1] if lines else "unknown error"


def first_line(stderr: str) -> str:
    lines = _lines(stderr)
    return lines[0] if lines else "unknown error"


def kill_all(procs: set[subprocess.Popen[bytes]]) -> None:
    for proc in list(procs):
        with suppress(OSError):
            if proc.stdin:
                proc.stdin.close()  # a child that is idle ends by itself
        if proc.poll() is None:  # never signal a process id that may have been reused
            kill(proc)
        with suppress(subprocess.TimeoutExpired, OSError):
            proc.wait(timeout=5)
    procs.clear()
