#!/usr/bin/env python3
"""Daemon benchmark: resident memory over many processed files, and copy-to-tag latency.

    python bench/bench_daemon.py                  # 1000 files of warm-up, then 2000 more
    python bench/bench_daemon.py --files 1000 --warmup 300 --compare-arenas

``--compare-arenas`` runs the daemon three times in the same run: as shipped, started without
``MALLOC_ARENA_MAX`` (the package caps glibc's arenas at its first import); with
``MALLOC_ARENA_MAX=2`` (what the systemd units set); and with ``MALLOC_ARENA_MAX=<8 x CPUs>``
(glibc's own default ceiling, which also switches the package's cap off): the baseline the cap
is measured against. Peak RSS is sampled every 0.5 s.

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
import threading
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


def run(args: argparse.Namespace, extra_env: dict[str, str]) -> dict[str, float]:
    """One daemon, ``args.files`` arriving files; RSS samples and latencies."""
    with tempfile.TemporaryDirectory() as tmp:
        root, db = Path(tmp) / "music", Path(tmp) / "cache.sqlite"
        root.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), GENRE_TAGGER_MIN_CONFIDENCE="0.01",
                   XDG_CONFIG_HOME=str(Path(tmp) / "cfg"), **extra_env)
        log = open(Path(tmp) / "log", "wb")  # noqa: SIM115 - lives as long as the daemon
        proc = subprocess.Popen([sys.executable, "-m", "tagger", "watch", str(root), "--db",
                                 f"sqlite:///{db}", "--settle", "0.5", "--device", "cpu",
                                 "--log-level", "warning"], env=env, stdout=log, stderr=log)
        peak = [0.0]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.5):
                peak[0] = max(peak[0], rss_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
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
                samples["warm"] = rss_mb(proc.pid)
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
        sampling.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        lat = sorted(done[p] - finished[p] for p in finished)
    single.sort()
    return {"warm": samples["warm"], "end": samples["end"], "peak": peak[0],
            "rate": args.files / wall * 60, "wall": wall, "lat_median": statistics.median(lat),
            "lat_p95": lat[int(0.95 * len(lat))], "lat_max": lat[-1],
            "single_median": statistics.median(single), "single_max": single[-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--single", type=int, default=10, help="files copied one at a time at the end")
    ap.add_argument("--compare-arenas", action="store_true",
                    help="also run with glibc's default arena ceiling (the cap switched off)")
    args = ap.parse_args()
    modes = {"as shipped (no MALLOC_ARENA_MAX set)": {}}
    if args.compare_arenas:
        ceiling = str(8 * (os.cpu_count() or 1))
        modes["environment cap (MALLOC_ARENA_MAX=2)"] = {"MALLOC_ARENA_MAX": "2"}
        modes[f"glibc default (MALLOC_ARENA_MAX={ceiling})"] = {"MALLOC_ARENA_MAX": ceiling}
    results = {name: run(args, extra) for name, extra in modes.items()}
    print(f"\n{args.files} files ({args.warmup} of warm-up), {os.cpu_count()} CPUs, settle 0.5 s")
    print(f"{'daemon':45} {'RSS warm MB':>12} {'RSS end MB':>11} {'peak MB':>9} {'growth':>8} "
          f"{'files/min':>10}")
    for name, r in results.items():
        growth = (r["end"] / r["warm"] - 1) * 100
        print(f"{name:45} {r['warm']:12.1f} {r['end']:11.1f} {r['peak']:9.1f} {growth:+7.1f}% "
              f"{r['rate']:10.0f}")
    for name, r in results.items():
        print(f"{name}: copy finished -> tag written, burst (queueing): median {r['lat_median']:.2f} s, "
              f"p95 {r['lat_p95']:.2f} s, max {r['lat_max']:.2f} s; one file into an idle daemon: "
              f"median {r['single_median']:.2f} s, max {r['single_max']:.2f} s")


if __name__ == "__main__":
    main()
