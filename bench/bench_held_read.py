"""What reading a file's genres through the descriptor checked under the roots costs
(``tags.held_open``: found with O_PATH, checked a regular file under the roots, reopened, read
by mutagen from that descriptor), against the baseline in the same run: mutagen opening the
name. The page, a correction's look and the scan's read before a write take the first path.

Real encoded files (FLAC, MP3 with ID3v2, Ogg Vorbis, Opus, M4A), 30 s each, tagged; each read
``--reads`` times, the median of 5 rounds.

    python bench/bench_held_read.py [--reads 300]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tagger.tags import TagOptions, held_open, read_genres

FORMATS = {"flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame"], "ogg": ["-c:a", "libvorbis"],
           "opus": ["-c:a", "libopus"], "m4a": ["-c:a", "aac"]}


def _median_us(fn: Callable[[], object], reads: int) -> float:
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reads):
            fn()
        rounds.append((time.perf_counter() - t0) / reads * 1e6)
    return statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=300)
    args = ap.parse_args()
    options = TagOptions()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        print("| file | by name (baseline) | through the checked descriptor | |")
        print("|---|---|---|---|")
        for ext, codec in FORMATS.items():
            path = root / f"song.{ext}"
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                            "sine=frequency=440:duration=30", *codec, "-metadata",
                            "genre=Rock", str(path)], check=True)

            def held(path: Path = path) -> list[str]:
                with held_open(path, (str(root),)) as fh:
                    return read_genres(path, options, fh)

            assert held() == read_genres(path, options) == ["Rock"], ext
            base = _median_us(lambda path=path: read_genres(path, options), args.reads)
            checked = _median_us(held, args.reads)
            print(f"| .{ext} | {base:.0f} us | {checked:.0f} us | {checked / base:.2f}x |")


if __name__ == "__main__":
    main()
