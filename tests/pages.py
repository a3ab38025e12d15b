"""The page's tests' shared pieces: a real ``genre-tagger serve`` (or daemon) process on a free
port of 127.0.0.1, raw HTTP requests (the paths a browser would clean up are sent as they are),
and a headless Chromium driven by Selenium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemons import REPO, wait_until

from tagger.cache import Cache

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, target: str, body: str | bytes | None = None,
                headers: dict[str, str] | None = None,
                source: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request with ``target`` sent byte for byte (no client-side clean-up of ``..``,
        ``//`` or encoded slashes); Host 127.0.0.1:PORT unless ``headers`` say otherwise;
        from the loopback address ``source`` (127.0.0.2, ...: another client) if given."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                          source_address=(source, 0) if source else None)
        try:
            hdrs = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            if isinstance(body, str):
                body = body.encode()
                hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def env_for(tmp: Path, **settings: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3",
            "XDG_CONFIG_HOME": str(tmp / "no-config"),
            **{f"GENRE_TAGGER_{k.upper()}": v for k, v in settings.items()}}


def start(args: list[str], tmp: Path, port: int, host: str = "127.0.0.1",
          **settings: str) -> Served:
    """``genre-tagger ARGS`` (serve or watch), waited on until ``port`` answers or it ends."""
    log = tmp / f"page-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tagger", *args], env=env_for(tmp, **settings),
                                stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: answers(port, host) or proc.poll() is not None, 120)
    return Served(proc, port, log)


@contextmanager
def serving(root: Path, db: str, tmp: Path, *extra: str, **settings: str) -> Iterator[Served]:
    port = free_port()
    served = start(["serve", str(root), "--db", db, "--listen", f"127.0.0.1:{port}", *extra],
                   tmp, port, **settings)
    try:
        assert served.proc.poll() is None, served.log.read_text()
        yield served
    finally:
        rc = served.stop()
        assert rc == 0, served.log.read_text()


@contextmanager
def browser(width: int = 1280, height: int = 1400) -> Iterator[Any]:
    """Headless Chromium; audio may play without a click (the test presses play by script)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", f"--window-size={width},{height}",
                "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(pred: Any, timeout: float = 20.0) -> bool:
    """Until ``pred()``; an element gone with the page it was on (a navigation under way)
    counts as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except (StaleElementReferenceException, NoSuchElementException):
            pass
        time.sleep(0.1)
    return False


def fill(db: str, n: int, root: str = "/srv/music", seed: int = 0) -> None:
    """``n`` rows as a large library's cache holds them (statuses, reasons, genres, albums in
    folders), inserted at once."""
    import random

    from tagger.cache.schema import tracks
    from tagger.cache.store import _encode, put_new_rows

    rng = random.Random(seed)
    tags = [f"msd:tag{k}" for k in range(50)] + [f"mtt:tag{k}" for k in range(50)]
    genres = ["Rock", "Jazz", "Pop", "Electronic", "Folk", "Classical", "Hip-Hop", "Metal",
              "Blues", "Country", "Tango", "Polka"]
    now = time.time()
    rows = []
    for i in range(n):
        scores = {g: round(rng.random(), 3) for g in rng.sample(genres, 5)}
        chosen = sorted(scores, key=lambda g: -scores[g])[:2]
        kind = rng.random()
        row: dict[str, Any] = {
            "path": f"{root}/Artist {i // 200:03d}/Album {i // 12:05d}/{i % 12:02d} Track.flac",
            "status": "failed" if kind < 0.02 else "abstained" if kind < 0.1 else "done",
            "raw_scores": {t: round(rng.random(), 4) for t in tags},  # as large as a real row's
            "model_version": "musicnn@1cec5e03ef3f", "audio_id": f"{i:040x}",
            "decision_key": "missing|k",
            "size": 1000 + i, "mtime_ns": i, "genre_scores": scores, "genres_chosen": chosen,
            "album_key": f"album:{i // 12}", "created_at": now, "updated_at": now - i,
            "analysed_at": now - i, "analyses": 1}
        if row["status"] == "failed":
            row.update(genre_scores=None, raw_scores=None, genres_chosen=[], error_code="corrupt",
                       error_reason="cannot decode")
        elif kind < 0.6:
            row.update(genres_written=chosen, genres_before=[], genres_seen=chosen, written_at=now - i)
        else:
            row.update(genres_seen=[rng.choice(genres)])
        rows.append(row)
    keys = {k for r in rows for k in r} | {"genres_written", "genres_before", "genres_seen",
                                           "written_at", "error_code", "error_reason", "confidence"}
    rows = [_encode({k: r.get(k) for k in keys}) for r in rows]
    with Cache(db) as cache, cache.engine.begin() as conn:
        put_new_rows(conn, tracks, "path", rows)
