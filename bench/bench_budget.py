#!/usr/bin/env python3
"""How many windows a track needs: the adaptive budget's rule, replayed on real music.

    ../shared/corpus/build.sh /tmp/corpus
    python bench/bench_budget.py /tmp/corpus --scores /tmp/window-scores.npz

Scores *every* window of every original track in the corpus once (kept in ``--scores``, so
later runs only replay), then replays window choices on those scores: fixed budgets, and the
adaptive rule of :mod:`tagger.analysis.budget` with several settings. For each it prints the mean
windows per track and how often the top genre equals the one from every window, separately for
the packages whose names sort in the first half (where settings were chosen) and the second
half (a check on other music). Only the model's arithmetic is replayed; no timing here (see
``bench_engine.py`` for wall clock).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from tagger.analysis.budget import AdaptiveBudget, order
from tagger.analysis.config import EngineConfig
from tagger.analysis.extract import extract_windows
from tagger.analysis.features import window_starts
from tagger.analysis.model.catalog import get_model
from tagger.analysis.model.runner import window_scorer
from tagger.analysis.taxonomy import genre_scores
from tagger.errors import AudioError


def originals(corpus: Path) -> list[tuple[str, Path]]:
    with open(corpus / "manifest.csv") as fh:
        return [(r["package"], corpus / r["lib_path"]) for r in csv.DictReader(fh)
                if r["kind"] == "original"]


def score_all(corpus: Path, out: Path) -> None:
    scorer = window_scorer("musicnn")
    cfg = EngineConfig(budget=None)
    kept: dict[str, np.ndarray] = {}
    names = []
    t = time.perf_counter()
    tracks = originals(corpus)
    for i, (pkg, path) in enumerate(tracks):
        try:
            w = extract_windows(path, cfg)
        except AudioError as e:
            print(f"skip {path}: {e.reason}", file=sys.stderr)
            continue
        kept[f"s{len(names)}"] = scorer.score(w.windows).astype(np.float32)
        names.append((pkg, str(path)))
        if i % 20 == 0:
            print(f"{i}/{len(tracks)} {time.perf_counter() - t:.0f} s", file=sys.stderr)
    np.savez(out, names=np.array(names), runtime=np.array(scorer.runtime), **kept)


def top(tags: tuple[str, ...], raw: np.ndarray) -> str:
    g = genre_scores(tags, raw)
    return max(g.items(), key=lambda kv: kv[1])[0]


def replay(tags: tuple[str, ...], scores: list[np.ndarray], rule: AdaptiveBudget | int | None,
           ) -> tuple[list[bool], list[int]]:
    same, used = [], []
    for s in scores:
        full = top(tags, s.mean(axis=0))
        if rule is None:
            idx = list(range(len(s)))
        elif isinstance(rule, int):
            idx = [st // 187 for st in window_starts(len(s) * 187 + 0, 187, rule)]
        else:
            seq = order(len(s))
            n = rule.first
            while True:
                verdict = rule.settled(tags, s[seq[:n]], len(s))
                if verdict is not None:
                    n = verdict
                    break
                n = rule.next_count(n, len(s))
            idx = seq[:n]
        same.append(top(tags, s[idx].mean(axis=0)) == full)
        used.append(len(idx))
    return same, used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--scores", type=Path, default=Path("/tmp/window-scores.npz"))
    args = ap.parse_args()
    if not args.scores.exists():
        score_all(args.corpus, args.scores)
    z = np.load(args.scores)
    names = [tuple(n) for n in z["names"]]
    scores = [z[f"s{i}"] for i in range(len(names))]
    tags = get_model("musicnn").tags
    pkgs = sorted({p for p, _ in names})
    first = set(pkgs[:len(pkgs) // 2])
    halves = {"tuning": [s for (p, _), s in zip(names, scores) if p in first],
              "check": [s for (p, _), s in zip(names, scores) if p not in first]}
    print(f"{len(scores)} tracks ({z['runtime']!s}), "
          f"{sum(len(s) for s in scores) / len(scores):.1f} windows per track on average")
    rules: list[tuple[str, AdaptiveBudget | int | None]] = [
        (f"fixed {b}", b) for b in (4, 8, 12, 16, 24)]
    rules += [(f"adaptive {r.describe()}" + (" (default)" if r == AdaptiveBudget() else ""), r)
              for r in AdaptiveBudget.candidates()]
    print(f"{'rule':<54} " + "  ".join(f"{h + ' windows':>15} {h + ' top-1':>11}" for h in halves))
    for name, rule in rules:
        cells = []
        for group in halves.values():
            same, used = replay(tags, group, rule)
            cells.append(f"{np.mean(used):15.1f} {np.mean(same):11.1%}")
        print(f"{name:<54} " + "  ".join(cells))


if __name__ == "__main__":
    main()
