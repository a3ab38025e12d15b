#!/usr/bin/env python3
"""Daemon benchmark: resident memory over many processed files, and copy-to-tag latency.

    python bench/bench_daemon.py                  # 1000 files of warm-up, then 2000 more

A real ``genre-tagger watch`` subprocess watches an empty folder; FILES distinct 3-second WAV
files are copied in, a few at a time. The daemon's RSS is sampled (from /proc) once the model is
loaded and warm (after the first 1000 files: the allocators' caches take that long to settle;
after 300 files it still grew by 20 %) and at the end. Latency is measured per file from the
moment its copy finished to the moment the cache records its written genres: for the burst
(queueing included) and for single files copied into an idle daemon. The baseline in the same
run is the daemon's own RSS right after the warm-up, which the end RSS is compared with.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # this checkout, not an installed copy
from test_daemon import wav_bytes  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def written(db: Path) -> dict[str, float]:
    try:
        con = sqlite3.connect(db, timeout=30)
        rows = con.execute("SELECT path, written_at FROM tracks WHERE written_at IS NOT NULL").fetchall()
        con.close()
        return dict(rows)
    except sqlite3.OperationalError:
        return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--single", type=int, default=10, help="files copied one at a time at the end")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, db = Path(tmp) / "music", Path(tmp) / "cache.sqlite"
        root.mkdir()
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO),
                   GENRE_TAGGER_MIN_CONFIDENCE="0.01", XDG_CONFIG_HOME=str(Path(tmp) / "cfg"))
        log = open(Path(tmp) / "log", "wb")  # noqa: SIM115 - lives as long as the daemon
        proc = subprocess.Popen([sys.executable, "-m", "tagger", "watch", str(root), "--db",
                                 f"sqlite:///{db}", "--settle", "0.5", "--device", "cpu",
                                 "--log-level", "warning"], env=env, stdout=log, stderr=log)
        time.sleep(8)
        finished: dict[str, float] = {}
        samples = {}
        t0 = time.perf_counter()
        for i in range(args.files):
            album = root / f"album{i // 50:03d}"
            album.mkdir(exist_ok=True)
            dest = album / f"{i:05d}.wav"
            dest.write_bytes(wav_bytes(10_000 + i))
            finished[str(dest)] = time.time()
            if i == args.warmup:
                while len(written(db)) < args.warmup:
                    time.sleep(0.5)
                samples["after warm-up"] = rss_mb(proc.pid)
            if i % 20 == 19:  # a few at a time, like albums being copied in
                while len(written(db)) < i - 200:
                    time.sleep(0.2)
        while len(done := written(db)) < args.files:
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        samples["end"] = rss_mb(proc.pid)
        # Latency without a backlog: one file at a time into an idle daemon.
        single = []
        for j in range(args.single):
            dest = root / "single" / f"{j:03d}.wav"
            dest.parent.mkdir(exist_ok=True)
            dest.write_bytes(wav_bytes(90_000 + j))
            t = time.time()
            while str(dest) not in (w := written(db)):
                time.sleep(0.05)
            single.append(w[str(dest)] - t)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        lat = sorted(done[p] - finished[p] for p in finished)
    growth = (samples["end"] / samples["after warm-up"] - 1) * 100
    rate = args.files / wall * 60
    print(f"\n{args.files} files, {os.cpu_count()} CPUs, {wall:.0f} s ({rate:.0f} files/min)")
    print(f"RSS after warm-up ({args.warmup} files)  {samples['after warm-up']:8.1f} MB   (baseline)")
    print(f"RSS after {args.files} files             {samples['end']:8.1f} MB   ({growth:+.1f} %)")
    print(f"copy finished -> tag written, {args.files} files copied in a burst (queueing): "
          f"median {statistics.median(lat):.2f} s, p95 {lat[int(0.95 * len(lat))]:.2f} s, "
          f"max {lat[-1]:.2f} s")
    single.sort()
    print(f"copy finished -> tag written, one file at a time into an idle daemon: "
          f"median {statistics.median(single):.2f} s, max {single[-1]:.2f} s "
          f"(settle delay 0.5 s; the default is 2 s)")


if __name__ == "__main__":
    main()
