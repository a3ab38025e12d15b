"""The page on a large library (issue 26): how long each page takes on a cache of ``N`` tracks,
through a real ``genre-tagger serve`` over HTTP, with the schema v8 indexes and, as the
baseline in the same run, on a copy of the same cache without them (what the same queries cost
on the v7 indexes).

The cache is made as a large library's is (``tests/pages.py`` ``fill``): every row with its
raw scores (100 tags, 3-4 KB of JSON, as real rows hold), 2 % failed, 8 % abstained, half
written by genre-tagger, the rest carrying a person's genres, 12 tracks an album, 200 an
artist's folder. Each page is requested once to warm up, then ``--runs`` times: the median.

    python bench/bench_page.py [--tracks 50000] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pages import fill, serving


def pages(root: Path) -> list[tuple[str, str]]:
    return [("decisions, least confident first", "/decisions"),
            ("the same, page 500", "/decisions?offset=24950"),
            ("the same, last page", "/decisions?offset=49950"),
            ("written, most recent first", "/decisions?reason=written&order=recent"),
            ("left alone (a person's genres)", "/decisions?reason=kept"),
            ("one genre", "/decisions?genre=Tango"),
            ("one artist's folder", f"/decisions?folder={quote(str(root / 'Artist 007'))}"),
            ("failures of one kind", "/decisions?reason=failed&error=corrupt"),
            ("the library", "/"),
            ("a track (its file absent: the cache's part)", "/track/25000")]


def timed(served: object, target: str, runs: int) -> tuple[float, float]:
    """(the first request, the median of ``runs`` more)."""
    request = served.request  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    status, _, body = request("GET", target)
    first = (time.perf_counter() - t0) * 1000
    assert status == 200, (target, status, body[:300])
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        request("GET", target)
        times.append((time.perf_counter() - t0) * 1000)
    return first, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-page-"))
    try:
        root = work / "music"
        root.mkdir()
        db = work / "v8.sqlite"
        t0 = time.perf_counter()
        fill(f"sqlite:///{db}", args.tracks, str(root))
        print(f"{args.tracks} tracks in {db.stat().st_size / 1e6:.0f} MB, made in "
              f"{time.perf_counter() - t0:.1f} s")
        base = work / "baseline.sqlite"
        shutil.copy(db, base)
        con = sqlite3.connect(base)
        con.executescript("DROP INDEX ix_tracks_confidence; DROP INDEX ix_tracks_updated_at; VACUUM;")
        con.close()
        results: dict[str, dict[str, float]] = {}
        for name, path in (("v8", db), ("baseline", base)):
            with serving(root, f"sqlite:///{path}", work) as s:
                for label, target in pages(root):
                    first, median = timed(s, target, args.runs)
                    results.setdefault(label, {})[name] = median
                    if target == "/":  # its genres are counted at most every 30 s: this once
                        results.setdefault("the library, genres counted anew", {})[name] = first
        print(f"\n{'page':<44} {'v8 indexes':>11} {'without':>11} {'speed-up':>9}")
        for label, r in results.items():
            print(f"{label:<44} {r['v8']:>8.1f} ms {r['baseline']:>8.1f} ms "
                  f"{r['baseline'] / r['v8']:>8.1f}x")
        print(f"\nmedian of {args.runs} requests each after one to warm up, over HTTP from this "
              "machine (127.0.0.1), one genre-tagger serve process")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
