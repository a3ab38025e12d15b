"""Real daemon subprocesses for the tests: start one on a folder, wait on it, read its cache."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def wav_bytes(seed: int, seconds: float = 3.0, rate: int = 16_000) -> bytes:
    """Distinct, music-like audio per seed (so no two files share an audio identity)."""
    import io

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f = 110 * 2 ** (rng.integers(0, 24) / 12)
    pcm = 0.3 * np.sin(2 * np.pi * f * t) + 0.3 * np.exp(-(t % 0.5) * 20) * rng.standard_normal(len(t))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def copy_slowly(data: bytes, dest: Path, chunks: int = 3, pause: float = 0.05) -> None:
    """Write a file in pieces, as a slow copy over the network would."""
    step = -(-len(data) // chunks)
    with open(dest, "wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i:i + step])
            fh.flush()
            time.sleep(pause)


RUNNING: list[subprocess.Popen[bytes]] = []


class Daemon:
    def __init__(self, root: Path, db: Path, log: Path, *extra: str, caps_dropped: bool = False,
                 url: str | None = None, env: dict[str, str] | None = None,
                 wait: bool = True, prefix: tuple[str, ...] = ()) -> None:
        """``url``: another cache database than the SQLite file ``db`` (PostgreSQL); ``env``:
        settings (``GENRE_TAGGER_*``); ``wait``: until it says it is watching; ``prefix``: a
        command it runs under (``unshare ...``)."""
        args = [sys.executable, "-m", "tagger", "watch", str(root), "--db", url or f"sqlite:///{db}",
                "--settle", "0.5", "--device", "cpu", *extra]
        if caps_dropped and os.geteuid() == 0:
            caps = "-dac_override,-dac_read_search"
            args = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *args]
        args = [*prefix, *args]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO),
               "GENRE_TAGGER_MIN_CONFIDENCE": "0.01",
               "XDG_CONFIG_HOME": str(db.parent / "no-config"), **(env or {})}
        self.log = log
        with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        RUNNING.append(self.proc)
        self.db = db
        if wait:
            wait_until(lambda: "watching" in log.read_text() or self.proc.poll() is not None, 120)
            assert self.proc.poll() is None, log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 90) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def query(db: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def pg_query(url: str, statement: str) -> list[tuple]:  # type: ignore[type-arg]
    """``query`` on a PostgreSQL cache (a SQLAlchemy URL)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(statement))]
    finally:
        engine.dispose()


def tagged(db: Path) -> dict[str, int]:
    return {p: n for p, n in query(db, "SELECT path, analyses FROM tracks WHERE genres_written IS NOT NULL")}


def no_daemon_left_behind() -> Iterator[None]:
    """A failed assertion must not leave a daemon running after its test (wrap as a fixture)."""
    yield
    while RUNNING:
        proc = RUNNING.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
