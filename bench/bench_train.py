#!/usr/bin/env python3
"""Training benchmark: which features, which pooling, and how long it all takes.

    python bench/bench_train.py [--data /tmp/bench-train] [--per-style 30] [--seconds 30]
    python bench/bench_train.py --only-shift   # table 3 alone (about 25 min on 2 cores)

Labelled songs are rendered with mma + fluidsynth (tests/labelled.py): TRAIN styles for training,
new songs of the same styles for testing (another seed, MP3), and HELD-OUT styles the models never
saw. Synthetic music: good for relative comparisons, not for claims about real music.

Tables printed:
1. accuracy per feature set (pooled max+mean channels, the 200-d penultimate layer, one network)
   with the linear head, and per pooling on the pooled features, with every training song (all
   windows) and with few labels and short songs (8 per style, 9 s), next to the majority class
   and the shipped model's zero-shot answer on the same songs; on held-out styles, the share of songs
   each model abstains on (it cannot be right there: abstaining is the right answer);
2. time to extract features per track, to train on 200 / 1,000 / 5,000 songs (1,000 and 5,000
   are the real bags resampled with noise: the time depends on the size, not the music), and to
   re-decide 10,000 stored tracks with a new model (read from the cache, unpack, head, choose);
3. under shift (bench/bench_shift.py): every head, and the levers (stored vs float features,
   mid-end vs every feature, hinge vs logistic), on new songs played with other instruments and
   recorded otherwise, in both directions, beside the same instruments; needs Debian's
   fluid-soundfont-gm and musescore-general-soundfont-small.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from tagger.analysis.config import FIXED_BUDGET, EngineConfig
from tagger.analysis.embedding import instances, pack, unpack
from tagger.analysis.extract import extract_windows
from tagger.analysis.model.catalog import get_model, weights_path
from tagger.analysis.model.network import BN_EPSILON, FEATURES
from tagger.analysis.model.runner import WindowScorer, window_scorer
from tagger.analysis.model.trained import TrainedModel, forward, trained_scores
from tagger.analysis.taxonomy import Selection
from tagger.cache import Cache
from tagger.cache.store import StoredFeatures
from tagger.training.head import pad
from tagger.training.labels import Labelled
from tagger.training.metrics import score
from tagger.training.trainer import (
    DEFAULT_POOLING,
    Bags,
    TrainOptions,
    baselines,
    fit_model,
    predictions,
)

TRAIN_STYLES = ["Tango", "Rock", "Swing", "Polka", "Trance", "Waltz", "Bossa Nova", "Blues"]
HELD_OUT = ["March", "Country", "Ska", "Samba"]


def render(data: Path, per_style: int, seconds: float) -> dict[str, list]:
    from labelled import render_set

    sets = {}
    for name, styles, n, seed, fmt in (("train", TRAIN_STYLES, per_style, 1, "wav"),
                                       ("test", TRAIN_STYLES, max(4, per_style // 3), 2, "mp3"),
                                       ("held_out", HELD_OUT, max(4, per_style // 3), 3, "mp3")):
        folder = data / name
        marker = folder / ".done"
        if not marker.exists():
            sets[name] = render_set(folder, styles, n, seconds=seconds, seed=seed, fmt=fmt)
            marker.write_text("\n".join(f"{s.path}\t{s.genre}\t{s.artist}" for s in sets[name]))
        else:
            from labelled import Song

            sets[name] = [Song(Path(p), g, a) for p, g, a in
                          (line.split("\t") for line in marker.read_text().splitlines())]
    return sets


def window_features(songs: list, scorer: WindowScorer, cfg: EngineConfig) -> tuple[list, list, float]:
    """Per song: every window's pooled features and the song's raw scores; seconds per track."""
    feats, raws = [], []
    start = time.perf_counter()
    for s in songs:
        w = extract_windows(s.path, cfg).windows
        out = scorer.score_with_features(w)
        n = len(scorer.tags)
        feats.append(out[:, n:])
        raws.append(dict(zip(scorer.tags, out[:, :n].mean(axis=0).tolist())))
    return feats, raws, (time.perf_counter() - start) / len(songs)


def penultimate(window_feats: np.ndarray, networks: tuple[str, ...]) -> np.ndarray:
    """The 200-d dense layer after ReLU and batch norm, computed from the pooled features."""
    outs = []
    for i, net in enumerate(networks):
        x = window_feats[:, i * FEATURES:(i + 1) * FEATURES].astype(np.float64)
        with np.load(weights_path(net)) as w:
            def bn(v: np.ndarray, name: str, w=w) -> np.ndarray:
                return ((v - w[f"{name}/moving_mean"]) / np.sqrt(w[f"{name}/moving_variance"] + BN_EPSILON)
                        * w[f"{name}/gamma"] + w[f"{name}/beta"])
            h = np.maximum(bn(x, "pool_bn") @ w["dense/kernel"] + w["dense/bias"], 0)
            outs.append(bn(h, "dense_bn"))
    return np.concatenate(outs, axis=1).astype(np.float32)


def bags_of(songs: list, feats: list, raws: list, kind: str, networks: tuple[str, ...]) -> Bags:
    bags = []
    for f in feats:
        if kind == "penultimate":
            f = penultimate(f, networks)
        elif kind == "pooled-msd":
            f = f[:, :FEATURES]
        bags.append(unpack(pack(instances(f))))  # as stored: instances, 8-bit
    files = [Labelled(str(s.path), (s.genre,), f"artist:{s.artist}") for s in songs]
    return Bags(files, bags, raws)


def judge(arrays: dict, thresholds: np.ndarray, pooling: str, classes: list[str],
          test: Bags, held: Bags) -> tuple[dict, float]:
    x, m = pad(test.bags)
    probs = forward(pooling, arrays, x, m, False)  # type: ignore[arg-type]
    answers = predictions(probs, classes, thresholds, False)
    r = score("", classes, [f.genres[0] for f in test.files], answers)
    forced = score("", classes, [f.genres[0] for f in test.files],
                   [classes[int(np.argmax(p))] for p in probs])
    xh, mh = pad(held.bags)
    held_answers = predictions(forward(pooling, arrays, xh, mh, False), classes, thresholds, False)  # type: ignore[arg-type]
    abstained = sum(a is None for a in held_answers) / len(held_answers)
    return {"acc": r.accuracy, "bal": r.balanced_accuracy, "f1": r.macro_f1, "cov": r.coverage,
            "top1": forced.accuracy}, abstained


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "bench-train")
    ap.add_argument("--per-style", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seeds", type=int, default=4, help="training seeds averaged per row")
    ap.add_argument("--small-per-style", type=int, default=8,
                    help="songs per style in the few-labels, short-songs regime")
    ap.add_argument("--fresh", action="store_true",
                    help="extract features again even if an earlier run kept them")
    ap.add_argument("--shift-data", type=Path,
                    default=Path(tempfile.gettempdir()) / "bench-shift")
    ap.add_argument("--shift-per-style", type=int, default=24)
    ap.add_argument("--runs", type=int, default=3, help="runs (seed, draw) per row of table 3")
    ap.add_argument("--only-shift", action="store_true", help="table 3 alone")
    ap.add_argument("--shift-seeds", type=int, default=0,
                    help="move every seed of table 3's sets (a held-out run: other songs)")
    ap.add_argument("--heads", help="table 3's rows starting with these (comma-separated)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.only_shift:
        shifted(args)
        print(f"\nbench total {time.perf_counter() - t0:.0f} s")
        return
    sets = render(args.data, args.per_style, args.seconds)
    print(f"songs: {len(sets['train'])} train, {len(sets['test'])} new songs of the same styles, "
          f"{len(sets['held_out'])} of held-out styles (rendered in {time.perf_counter() - t0:.0f} s)")
    cfg = EngineConfig(device="cpu", budget=FIXED_BUDGET)  # as `train` analyses its files
    scorer = window_scorer("musicnn", "cpu", features=True)
    scorer.score_with_features(np.zeros((scorer.batch_size, 187, 96), np.float32))  # trace once
    networks = get_model("musicnn").networks
    data = {}
    per_track = 0.0
    for name, songs in sets.items():
        kept = args.data / f"features-{name}.npz"
        if kept.exists() and not args.fresh and "raw" in np.load(kept).files:  # an earlier run's
            with np.load(kept, allow_pickle=False) as z:
                feats = [z[f"arr_{i}"] for i in range(len(songs))]
                raws = [dict(zip(scorer.tags, r.tolist())) for r in z["raw"]]
        else:
            feats, raws, secs = window_features(songs, scorer, cfg)
            np.savez(kept, *feats, raw=np.asarray([[r[t] for t in scorer.tags] for r in raws],
                                                  np.float32))
            if name == "train":
                per_track = secs
        data[name] = (songs, feats, raws)
    if not per_track:  # timed on a few songs when the features were kept
        per_track = window_features(sets["train"][:10], scorer, cfg)[2]
    classes = sorted(TRAIN_STYLES)
    quiet = lambda _s: None  # noqa: E731

    def small(name: str, seed: int) -> tuple[list, list, list]:
        """Few labels, short songs: ``--small-per-style`` songs per style (train only; another
        draw per seed, since which songs one has matters as much as the pooling), first 3
        windows (9 s) of every song."""
        songs, feats, raws = data[name]
        idx = list(range(len(songs)))
        if name == "train":
            rng = np.random.default_rng(seed)
            per: dict[str, list[int]] = {}
            for i, s in enumerate(songs):
                per.setdefault(s.genre, []).append(i)
            idx = [int(i) for g in sorted(per)
                   for i in rng.choice(per[g], args.small_per_style, replace=False)]
        return [songs[i] for i in idx], [feats[i][:3] for i in idx], [raws[i] for i in idx]

    rows = []
    for regime, kind, pooling in (
            ("full", "pooled", "linear"), ("full", "penultimate", "linear"),
            ("full", "pooled-msd", "linear"), ("full", "pooled", "mean"),
            ("full", "pooled", "attention"), ("full", "pooled", "autopool"),
            ("small", "pooled", "linear"), ("small", "penultimate", "linear"),
            ("small", "pooled", "mean"), ("small", "pooled", "attention"),
            ("small", "pooled", "autopool")):
        results, abst, secs = [], [], []
        for seed in range(args.seeds):
            d = data if regime == "full" else {n: small(n, seed) for n in data}
            train, test, held = (bags_of(*d[n], kind, networks) for n in ("train", "test", "held_out"))
            t = time.perf_counter()
            arrays, thr, _ = fit_model(train, classes, False, TrainOptions(pooling, seed=seed), quiet)  # type: ignore[arg-type]
            secs.append(time.perf_counter() - t)
            r, a = judge(arrays, thr, pooling, classes, test, held)
            results.append(r)
            abst.append(a)
        mean = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
        sd = float(np.std([r["bal"] for r in results]))
        label = (f"{len(train.files)} songs x {'all' if regime == 'full' else 3} windows")
        rows.append((label, f"{kind} ({train.bags[0].shape[1]}-d)", pooling, mean, sd,
                     float(np.mean(abst)), float(np.mean(secs))))
    test = bags_of(*data["test"], "pooled", networks)
    counts = Counter(f.genres[0] for f in bags_of(*data["train"], "pooled", networks).files)
    base_rows = baselines(counts, test, classes, "musicnn")

    print("\n1. Accuracy on new songs of the training styles (mean over seeds; balanced ± sd), "
          "and abstentions on held-out styles")
    print("| training set | features | pooling | accuracy | balanced acc. | macro-F1 | answered | "
          "top-1 (never abstaining) | abstained on held-out styles | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for regime, feat, pooling, m, sd, a, secs in rows:
        print(f"| {regime} | {feat} | {pooling} | {m['acc']:.3f} | {m['bal']:.3f} ± {sd:.3f} | "
              f"{m['f1']:.3f} | {m['cov']:.0%} | {m['top1']:.3f} | {a:.0%} | {secs:.1f} |")
    for r in base_rows:
        note = f" ({r.notes[0]})" if r.notes else ""
        print(f"| {len(data['train'][0])} songs | baseline | {r.name}{note} | {r.accuracy:.3f} | "
              f"{r.balanced_accuracy:.3f} | {r.macro_f1:.3f} | {r.coverage:.0%} | - | - | - |")

    # 2. Times
    train = bags_of(*data["train"], "pooled", networks)
    rng = np.random.default_rng(0)
    article = "an" if DEFAULT_POOLING[0] in "aeiou" else "a"
    print("\n2. Times (2 CPU cores)")
    print("| what | time |")
    print("|---|---|")
    print(f"| extract features (decode + window network), per {args.seconds:.0f}-s track | "
          f"{per_track * 1000:.0f} ms |")
    for n in (200, 1000, 5000):
        idx = rng.integers(0, len(train.bags), n)
        big = Bags([train.files[i] for i in idx],
                   [train.bags[i] + rng.normal(0, 0.05, train.bags[i].shape).astype(np.float32)
                    for i in idx], [train.raw[i] for i in idx])
        t = time.perf_counter()
        _, _, summary = fit_model(big, classes, False, TrainOptions(DEFAULT_POOLING, seed=0), quiet)
        how = (f"{summary.get('best_epoch', '?')} best epoch of {len(summary['curve'])}"
               if "curve" in summary else
               f"C {summary['C']:g} by {summary.get('folds', 0)}-fold grouped cross-validation")
        print(f"| train {article} {DEFAULT_POOLING} head on {n} songs ({how}) | "
              f"{time.perf_counter() - t:.1f} s |")
    # re-decide 10,000 stored tracks with a new model
    arrays, thr, _ = fit_model(train, classes, False, TrainOptions(DEFAULT_POOLING, seed=0), quiet)
    model = TrainedModel("bench", "bench@0", {"classes": classes, "thresholds": thr.tolist(),
                                              "multi_label": False, "pooling": DEFAULT_POOLING,
                                              "base": "musicnn"}, arrays)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(f"sqlite:///{tmp}/c.sqlite")
        for i in range(10_000):
            b = train.bags[i % len(train.bags)]
            cache.put_features(f"pcm:{i:064d}", "base", StoredFeatures(len(b), pack(b), {}))
        ids = [f"pcm:{i:064d}" for i in range(10_000)]
        t = time.perf_counter()
        stored = cache.features(ids, "base")
        for sf in stored.values():
            model.choose(trained_scores(model, unpack(sf.data)), Selection())
        secs = time.perf_counter() - t
        print(f"| re-decide 10,000 stored tracks with a new model (read, unpack, head, choose) | "
              f"{secs:.1f} s ({10_000 / secs:.0f} tracks/s) |")
    shifted(args)
    print(f"\nbench total {time.perf_counter() - t0:.0f} s")


def shifted(args: argparse.Namespace) -> None:
    """Table 3 (bench/bench_shift.py), when the other instrument sets are installed."""
    import bench_shift
    from labelled import FLUID, MUSESCORE

    missing = [f for f in (FLUID, MUSESCORE) if not Path(f).exists()]
    if missing:
        print(f"\n3. Under shift: skipped, {', '.join(missing)} missing (apt install "
              "fluid-soundfont-gm musescore-general-soundfont-small)")
        return
    t = time.perf_counter()
    songs = bench_shift.render(args.shift_data, args.shift_per_style, args.seconds,
                               args.shift_seeds)
    cfg = EngineConfig(device="cpu", budget=FIXED_BUDGET)
    scorer = window_scorer("musicnn", "cpu", features=True)
    feats = bench_shift.features(args.shift_data, songs, scorer, cfg)
    print(f"\nshifted sets: {', '.join(f'{n} {len(s)}' for n, s in songs.items())} songs "
          f"(rendered and analysed in {time.perf_counter() - t:.0f} s)")
    bench_shift.table(songs, feats, args.runs, args.heads)


if __name__ == "__main__":
    main()
