#!/usr/bin/env python3
"""A local scan against ``scan --ray local`` on the same real tracks, in one run.

    ../shared/corpus/build.sh /tmp/corpus
    pip install ".[cluster]"
    python bench/bench_cluster.py /tmp/corpus --tracks 40

Each row is a fresh ``genre-tagger scan`` of its own copy of the tracks into its own SQLite
cache (start-up included; for Ray that is starting a Ray instance on this machine, which a
standing cluster does not pay per scan). Ray's overhead per track is the difference divided by
the tracks. Then the two caches are compared: same genres, scores within 1e-5.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import ROOT, env, pick_tracks


def scan(folder: Path, db: Path, *extra: str) -> float:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "tagger", "scan", "--db", f"sqlite:///{db}",
                          *extra, str(folder)], capture_output=True, text=True,
                         env=dict(env(), RAY_USAGE_STATS_ENABLED="0"), cwd=ROOT)
    wall = time.perf_counter() - t
    if out.returncode not in (0, 1):
        raise SystemExit(f"scan {' '.join(extra)}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return wall


def rows(db: Path) -> dict[str, tuple[str, dict[str, float]]]:
    con = sqlite3.connect(db)
    got = {os.path.basename(p): (w or "", json.loads(s or "{}"))
           for p, w, s in con.execute("SELECT path, genres_written, genre_scores FROM tracks")}
    con.close()
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--tracks", type=int, default=40)
    args = ap.parse_args()
    files = pick_tracks(args.corpus, args.tracks)
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        for name, extra in (("local scan", ()), ("scan --ray local", ("--ray", "local"))):
            folder = Path(tmp) / name.replace(" ", "_")
            folder.mkdir()
            for i, f in enumerate(files):
                shutil.copy(f, folder / f"{i:03d}-{f.name}")
            walls[name] = (scan(folder, Path(tmp) / f"{folder.name}.sqlite", *extra),
                           rows(Path(tmp) / f"{folder.name}.sqlite"))
            print(f"{name}: {walls[name][0]:.1f} s", file=sys.stderr)
    (local, a), (ray, b) = walls["local scan"], walls["scan --ray local"]
    same = sum(a[k][0] == b[k][0] for k in a)
    diff = max(abs(a[k][1][g] - b[k][1][g]) for k in a for g in a[k][1])
    n = len(files)
    print(f"\n{n} real tracks, {os.cpu_count()} CPUs")
    print(f"{'command':<32}{'wall':>10}{'tracks/min':>12}")
    for name, (wall, _) in walls.items():
        print(f"{'genre-tagger ' + name:<32}{wall:>9.1f}s{n / wall * 60:>12.0f}")
    print(f"\nRay's overhead: {(ray - local) / n * 1000:.0f} ms per track "
          f"({ray - local:.1f} s in all, Ray's start-up included)")
    print(f"same genres written: {same}/{len(a)}; largest genre score difference {diff:.2g}")


if __name__ == "__main__":
    main()
