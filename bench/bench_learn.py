"""The library teaches it (issue 25, item 4): what a learning round gives a library, and what it
costs as the library grows.

Table 1, through the real front doors (``genre-tagger scan``, then ``genre-tagger learn``, in
subprocesses, on one SQLite cache): a library of rendered songs (``tests/labelled.py``), 8
styles. A person tagged ``--person`` songs per style, played with one instrument set
(TimGM6mb) and tagged with an artist per soundfont and tempo band; ``--arrivals`` songs per style
arrived untagged, played with the two other instrument sets and each through its own recording
chain (encoder, loudness, EQ, sample rate). Rows: the shipped model's genres on the arrivals
(after ``scan``), then a ``learn`` round with the person's genres dealt to the wrong songs (a bad
bulk edit), then one with the right genres, and what the arrivals carry after each.

Table 2, the cost of one round by library size: ``N`` tiny real files, each tagged by a person,
in a real SQLite cache with stored features (each a real song's from table 1, with noise: the
numbers are times, not accuracies): reading the tags, judging out of fold, training the model
that switches in.

    python bench/bench_learn.py [--data /tmp/bench-learn] [--person 12] [--arrivals 6]
                                [--sizes 500,2000,8000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

STYLES = ["Tango", "Rock", "Swing", "Polka", "Trance", "Waltz", "Bossa Nova", "Blues"]


def cli(db: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XDG_CONFIG_HOME": str(db.parent / "none")}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "tagger", *args, "--db", f"sqlite:///{db}"],
                       capture_output=True, text=True, env=env)
    if r.returncode not in (0, 1):
        raise SystemExit(f"genre-tagger {' '.join(args)}: {r.stderr[-2000:]}")
    return r, time.perf_counter() - t0


def library(data: Path, person: int, arrivals: int) -> tuple[dict[Path, str], dict[Path, str]]:
    """The songs (rendered once, kept in ``data``): the person's and the arrivals, with truth."""
    from labelled import FLUID, MUSESCORE, TIMGM, render_set, tag_artist

    lib = data / "library"
    truth_file = data / "truth.tsv"
    if not truth_file.exists():
        shutil.rmtree(lib, ignore_errors=True)
        lines = []
        for i, style in enumerate(STYLES):
            for s in render_set(lib / "shelf", [style], person, seconds=20, seed=100 + i,
                                fmt="mp3", fonts=(TIMGM,)):
                tag_artist(s.path, s.artist)
                lines.append(f"person\t{s.path}\t{style}")
            for s in render_set(lib / "arrivals", [style], arrivals, seconds=20, seed=200 + i,
                                fonts=(FLUID, MUSESCORE), shifted=True):
                lines.append(f"arrival\t{s.path}\t{style}")
        truth_file.write_text("\n".join(lines) + "\n")
    mine: dict[Path, str] = {}
    new: dict[Path, str] = {}
    for line in truth_file.read_text().splitlines():
        kind, path, style = line.split("\t")
        (mine if kind == "person" else new)[Path(path)] = style
    return mine, new


def right(arrivals: dict[Path, str]) -> tuple[float, float]:
    """Share of the arrivals whose first genre is their style; share carrying any genre."""
    from tagger.tags import TagOptions, read_genres

    got = {p: read_genres(str(p), TagOptions()) for p in arrivals}
    return (sum(g[:1] == [arrivals[p]] for p, g in got.items()) / len(got),
            sum(bool(g) for g in got.values()) / len(got))


def table1(data: Path, person: int, arrivals: int) -> Path:
    from tagger.tags import TagOptions, write_genres

    mine, new = library(data, person, arrivals)
    db = data / "cache.sqlite"
    db.unlink(missing_ok=True)
    for p in new:  # the arrivals start untagged, every run
        write_genres(str(p), [], TagOptions())
    lib = str(data / "library")
    dealt = list(mine.values())
    random.Random(1).shuffle(dealt)
    for p, g in zip(mine, dealt):
        write_genres(str(p), [g], TagOptions())
    rows = []
    _, s = cli(db, "scan", lib, "--device", "cpu")
    rows.append(("scan (the shipped model)", "", s, *right(new)))
    r, s = cli(db, "learn", lib)
    rows.append(("learn: the right genres dealt to the wrong songs", r.stdout.split(":")[0], s,
                 *right(new)))
    for p, g in mine.items():
        write_genres(str(p), [g], TagOptions())
    r, s = cli(db, "learn", lib)
    rows.append(("learn: the person's genres put right", r.stdout.split(":")[0], s, *right(new)))
    print(f"\nTable 1: {len(mine)} songs a person tagged ({person} per style, TimGM6mb), "
          f"{len(new)} arrivals ({arrivals} per style, FluidR3 or MuseScore, each its own "
          "recording chain); the arrivals' first genre against their style")
    print("| step | decision | seconds | arrivals right | arrivals with genres |")
    print("|---|---|---|---|---|")
    for name, decision, secs, ok, answered in rows:
        print(f"| {name} | {decision} | {secs:.1f} | {ok:.3f} | {answered:.2f} |")
    for line in r.stdout.splitlines()[:1]:
        print(f"\n  learn said: {line}")
    return db


def table2(source_db: Path, sizes: list[int], data: Path) -> None:
    from labelled import tag_artist

    from tagger.analysis.embedding import pack, unpack
    from tagger.analysis.model.catalog import model_version
    from tagger.analysis.model.resolved import open_model
    from tagger.cache import Cache
    from tagger.cache.store import StoredFeatures
    from tagger.settings import Settings
    from tagger.tags import TagOptions, write_genres
    from tagger.training import learning

    base = model_version(open_model("musicnn").base)
    with Cache(f"sqlite:///{source_db}") as src:
        rows = [r for r in src.rows_under([str(data / "library" / "shelf")])]
        stored = src.features([str(r.audio_id) for r in rows], base)
    from tagger.tags import read_genres

    by_style: dict[str, list[np.ndarray]] = {}
    for r in rows:
        if str(r.audio_id) in stored:
            style = read_genres(r.path, TagOptions())[0]
            by_style.setdefault(style, []).append(unpack(stored[str(r.audio_id)].data))
    wav = (data / "library" / "shelf").rglob("*.mp3").__next__().read_bytes()
    print("\nTable 2: one learning round by library size (tiny real files tagged by a person; "
          "stored features from table 1's songs with noise: times only)")
    print("| labelled songs | reading tags s | whole round s | decision | held-out songs |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in sizes:
        work = data / f"scale-{n}"
        shutil.rmtree(work, ignore_errors=True)
        (work / "lib").mkdir(parents=True)
        styles = sorted(by_style)
        with Cache(f"sqlite:///{work / 'cache.sqlite'}") as cache:
            for i in range(n):
                style = styles[i % len(styles)]
                path = work / "lib" / f"artist-{i % 97}" / f"{i:06d}.mp3"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(wav)
                write_genres(str(path), [style], TagOptions())
                tag_artist(path, f"artist {i % 97}")
                bag = by_style[style][int(rng.integers(len(by_style[style])))]
                noisy = (bag + rng.normal(0, 0.3, bag.shape)).astype(np.float32)
                cache.upsert(str(path), audio_id=f"bench:{i}", status="done")
                cache.put_features(f"bench:{i}", base, StoredFeatures(4, pack(noisy), {}))
            settings = Settings(roots=(str(work / "lib"),))
            t0 = time.perf_counter()
            learning.gather(settings, cache, base)
            read = time.perf_counter() - t0
            t0 = time.perf_counter()
            done = learning.learn(settings, cache, lambda _: None)
            whole = time.perf_counter() - t0
        compared = done.row.compared if done.row is not None else "-"
        print(f"| {n} | {read:.1f} | {whole:.1f} | {done.result} | {compared} |")
        if done.row is None:
            print(f"  ({done.said})")
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/bench-learn"))
    ap.add_argument("--person", type=int, default=12)
    ap.add_argument("--arrivals", type=int, default=6)
    ap.add_argument("--sizes", default="500,2000,8000")
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    db = table1(args.data, args.person, args.arrivals)
    if args.sizes:
        table2(db, [int(n) for n in args.sizes.split(",")], args.data)


if __name__ == "__main__":
    main()
