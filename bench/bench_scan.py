#!/usr/bin/env python3
"""Scan benchmark: a no-op rescan of a large library, and a first scan of real music.

    python bench/bench_scan.py --files 3000 [--corpus /tmp/corpus]

No-op rescan: a library of FILES tagged files (copies of a few real encodes, spread over album
folders) is scanned once, then again with nothing changed. The rescan is compared, in the same
run, with what it would cost to look inside every file instead of trusting size and mtime:
hashing every file's audio identity, and reading every file's tags with mutagen.

The claims a scan takes through the queue (so a daemon or a second scan never does a file
twice) are timed on their own, as a share of the first scan.

First scan: the corpus' transcodes (real music, eight formats) copied to a temporary library and
scanned from an empty cache (decode, analyse, tag, record), in tracks per minute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from tagger.analysis.config import EngineConfig
from tagger.cache import Cache
from tagger.cache.queue import WorkQueue
from tagger.formats.identity import audio_identity
from tagger.library.pipeline import Scanner, ScanOptions
from tagger.library.walk import walk
from tagger.tags import read_genres


def make_library(root: Path, n: int) -> None:
    seeds = []
    rng = np.random.default_rng(0)
    for i, (ext, args) in enumerate([("flac", ["-c:a", "flac"]), ("mp3", ["-c:a", "libmp3lame"]),
                                     ("ogg", ["-c:a", "libvorbis"]), ("m4a", ["-c:a", "aac"])]):
        t = np.arange(44_100 * 4) / 44_100
        pcm = (0.3 * np.sin(2 * np.pi * (110 + 50 * i) * t) + 0.05 * rng.standard_normal(len(t)))
        out = root / f"seed{i}.{ext}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "s16le", "-ar", "44100", "-ac", "1",
                        "-i", "-", *args, str(out)], input=(pcm * 32767).astype("<i2").tobytes(),
                       check=True)
        seeds.append(out)
    lib = root / "library"
    for k in range(n):
        album = lib / f"artist{k // 100:03d}" / f"album{k // 10:04d}"
        album.mkdir(parents=True, exist_ok=True)
        src = seeds[k % len(seeds)]
        shutil.copyfile(src, album / f"{k:05d}{src.suffix}")


def timed(fn):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=3000)
    ap.add_argument("--corpus", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    cfg = EngineConfig(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_library(root, args.files)
        lib = root / "library"
        with Cache(f"sqlite:///{root / 'cache.sqlite'}") as cache:
            first, t_first = timed(lambda: Scanner(ScanOptions((str(lib),)), cfg, cache).run())
            rows.append(("first scan (4 distinct audios, rest reused by identity)",
                         f"{args.files / t_first:,.0f} files/s",
                         f"{first.counts['analysed']} analysed, {first.counts['reused']} reused"))
            again, t_again = timed(lambda: Scanner(ScanOptions((str(lib),)), cfg, cache).run())
            assert again.counts["unchanged"] == args.files, again.counts
            rows.append(("no-op rescan (stat + cache index)", f"{args.files / t_again:,.0f} files/s",
                         f"{t_again:.2f} s for {args.files} files"))
            # What a first scan pays to share a library with a daemon or a second scan: one
            # claim of every pending file, one 'done' per outcome (part of the first scan above).
            paths = [p for p, _ in walk([lib])]
            claims = WorkQueue(cache)
            _, t_claim = timed(lambda: claims.claim(paths, "scan"))
            _, t_done = timed(lambda: [claims.done([p]) for p in paths])
            rows.append(("its claims: claim every file, then 'done' each",
                         f"{args.files / (t_claim + t_done):,.0f} files/s",
                         f"{t_claim:.2f} s + {t_done:.2f} s = "
                         f"{(t_claim + t_done) / t_first:.0%} of the first scan"))
        files = [p for p, _ in walk([lib])]
        _, t_id = timed(lambda: [audio_identity(p) for p in files])
        rows.append(("baseline: hash every file's audio identity", f"{len(files) / t_id:,.0f} files/s",
                     f"{t_id:.2f} s"))
        _, t_tags = timed(lambda: [read_genres(p) for p in files])
        rows.append(("baseline: read every file's tags (mutagen)", f"{len(files) / t_tags:,.0f} files/s",
                     f"{t_tags:.2f} s"))

        if args.corpus:
            real = root / "real"
            src = args.corpus / "transcoded"
            shutil.copytree(src, real)
            n = sum(1 for _ in walk([real]))
            with Cache(f"sqlite:///{root / 'real.sqlite'}") as cache:
                rep, t = timed(lambda: Scanner(ScanOptions((str(real),)), cfg, cache).run())
            rows.append(("first scan of the corpus transcodes (real music)", f"{n / t * 60:.0f} tracks/min",
                         f"{n} files in {t:.1f} s: {dict(rep.counts)}; failures {dict(rep.failures)}"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"\n{os.cpu_count()} CPUs")
    for r in rows:
        print(f"{r[0].ljust(w0)}  {r[1].rjust(w1)}  {r[2]}")


if __name__ == "__main__":
    main()
