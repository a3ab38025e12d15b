"""The shifted half of ``bench/bench_train.py`` (issue 25): heads trained on songs played with one
instrument set, judged on new songs of the same styles played with others, each through its own
recording chain (encoder and bitrate, loudness, EQ, sample rate: ``tests/labelled.py``'s
``chain_for``), beside new songs played and recorded as the training songs were.

Directions: TimGM6mb -> FluidR3 + MuseScore, and FluidR3 -> TimGM6mb + MuseScore. Every row is
the mean and spread over runs; run k trains with seed k on a draw of 80 % of each style's songs.
Levers beside the heads: the stored 8-bit instances against the same songs' float features,
every feature against the mid end's only, a logistic loss against the hinge.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tagger.analysis.embedding import instances, pack, unpack
from tagger.analysis.model.network import midend_features
from tagger.training import margin
from tagger.training.head import pad
from tagger.training.labels import Labelled
from tagger.training.metrics import score
from tagger.training.trainer import Bags, TrainOptions, baselines, fit_model, predictions

STYLES = ["Tango", "Rock", "Swing", "Polka", "Trance", "Waltz", "Bossa Nova", "Blues"]


def sets(per_style: int, seeds: int = 0) -> dict[str, dict[str, Any]]:
    """The five sets; ``seeds`` moves every seed (a held-out run: other songs, other chains)."""
    from labelled import FLUID, MUSESCORE, TIMGM

    n_test = max(4, per_style // 2)
    return {"train-timgm": dict(n=per_style, seed=seeds + 1, fonts=(TIMGM,), shifted=False,
                                fmt="wav"),
            "same-timgm": dict(n=n_test, seed=seeds + 2, fonts=(TIMGM,), shifted=False,
                               fmt="mp3"),
            "shifted-from-timgm": dict(n=n_test, seed=seeds + 3, fonts=(FLUID, MUSESCORE),
                                       shifted=True, fmt="wav"),
            "train-fluid": dict(n=per_style, seed=seeds + 4, fonts=(FLUID,), shifted=False,
                                fmt="wav"),
            "shifted-from-fluid": dict(n=n_test, seed=seeds + 5, fonts=(TIMGM, MUSESCORE),
                                       shifted=True, fmt="wav")}


def _render(job: tuple[Path, str, int, str, float, dict[str, Any]]) -> list[tuple[str, str, str]]:
    from labelled import render_set

    data, name, i, style, seconds, c = job
    return [(str(s.path), s.genre, s.artist) for s in render_set(
        data / name, [style], c["n"], seconds=seconds, seed=c["seed"] * 100 + i, fmt=c["fmt"],
        fonts=c["fonts"], shifted=c["shifted"])]


def render(data: Path, per_style: int, seconds: float,
           seeds: int = 0) -> dict[str, list[tuple[str, str, str]]]:
    """Every set's songs (path, style, artist), rendered once (two at a time) and kept."""
    kept = data / "songs.json"
    asked = {"per_style": per_style, "seconds": seconds, "seeds": seeds}
    if kept.exists():
        songs: dict[str, list[tuple[str, str, str]]] = json.loads(kept.read_text())
        made = songs.pop("_params", None)  # type: ignore[call-overload]
        if made is not None and made != asked:
            raise SystemExit(f"{data} holds songs made with {made}, not {asked}: "
                             "give another --shift-data")
        print(f"using the songs kept in {data} ({made or 'parameters not recorded'})")
        return songs
    todo = [(data, n, i, s, seconds, c) for n, c in sets(per_style, seeds).items()
            for i, s in enumerate(STYLES)]
    with ProcessPoolExecutor(2) as pool:
        done = list(pool.map(_render, todo))
    songs = {}
    for job, got in zip(todo, done):
        songs.setdefault(job[1], []).extend(got)
    data.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps({**songs, "_params": asked}))
    return songs


def features(data: Path, songs: dict[str, list[tuple[str, str, str]]], scorer: Any,
             cfg: Any) -> dict[str, tuple[list[np.ndarray], list[dict[str, float]]]]:
    """Per set: every song's window features (float) and raw tag scores, kept in ``data``."""
    from tagger.analysis.extract import extract_windows

    out = {}
    n_tags = len(scorer.tags)
    for name, ss in songs.items():
        kept = data / f"features-{name}.npz"
        if not kept.exists():
            feats, raws = [], []
            for path, _, _ in ss:
                got = scorer.score_with_features(extract_windows(Path(path), cfg).windows)
                feats.append(got[:, n_tags:])
                raws.append(got[:, :n_tags].mean(axis=0))
            np.savez(kept, *feats, raw=np.asarray(raws))
        with np.load(kept) as z:
            out[name] = ([z[f"arr_{i}"] for i in range(len(ss))],
                         [dict(zip(scorer.tags, r.tolist())) for r in z["raw"]])
    return out


def bags(name: str, songs: dict[str, list[tuple[str, str, str]]], feats: dict[str, Any],
         stored: bool = True) -> Bags:
    """A set's bags: as the cache stores them (instances, 8-bit), or the same in float."""
    fs, raws = feats[name]
    files = [Labelled(p, (g,), f"artist:{a}") for p, g, a in songs[name]]
    return Bags(files, [unpack(pack(instances(f))) if stored else instances(f) for f in fs], raws)


def draw(data: Bags, k: int) -> Bags:
    """Run ``k``'s training songs: 80 % of each style's, drawn with seed ``k``."""
    rng = np.random.default_rng(k)
    idx: list[int] = []
    for style in sorted({f.genres[0] for f in data.files}):
        mine = [i for i, f in enumerate(data.files) if f.genres[0] == style]
        idx += sorted(int(i) for i in rng.choice(mine, max(1, round(0.8 * len(mine))), replace=False))
    return data.subset(idx)


Head = Callable[[Bags, Bags, int], tuple[float, float]]


def head(pooling: str) -> Head:
    """A product head, as ``train`` fits it: (accuracy, share answered) on ``test``."""
    def run(train: Bags, test: Bags, seed: int) -> tuple[float, float]:
        from tagger.analysis.model.trained import forward

        arrays, thr, _ = fit_model(train, sorted(STYLES), False, TrainOptions(pooling, seed=seed),  # type: ignore[arg-type]
                                   lambda _s: None)
        x, m = pad(test.bags)
        return judge(predictions(forward(pooling, arrays, x, m, False), sorted(STYLES), thr, False),  # type: ignore[arg-type]
                     test)
    return run


def judge(answers: list[str | None], test: Bags) -> tuple[float, float]:
    truth = [f.genres[0] for f in test.files]
    r = score("", sorted(STYLES), truth, answers)
    return r.accuracy, r.coverage


def svm_all(train: Bags, test: Bags, seed: int) -> tuple[float, float]:
    """The default head on every feature (the mid-end choice's lever)."""
    from tagger.analysis.model.trained import forward
    from tagger.training.trainer import _targets, _weights, main_labels

    classes = sorted(STYLES)
    y = _targets(train.files, classes)
    arrays, oof, _ = margin.fit(train.bags, y, _weights(y), main_labels(train.files),
                                [f.group for f in train.files], False, seed, lambda _s: None,
                                midend=False)
    x, m = pad(test.bags)
    return judge(predictions(forward("svm", arrays, x, m, False), classes,
                             margin.thresholds(oof, y, False), False), test)


def logistic_mid(train: Bags, test: Bags, seed: int) -> tuple[float, float]:
    """Logistic regression on the same standardised mid-end means (the hinge's lever)."""
    from sklearn.linear_model import LogisticRegression

    keep = midend_features(train.bags[0].shape[1]) or list(range(train.bags[0].shape[1]))
    x = margin.song_means(train.bags)[:, keep]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = LogisticRegression(C=0.1, max_iter=5000).fit((x - mean) / std,
                                                          [f.genres[0] for f in train.files])
    xt = (margin.song_means(test.bags)[:, keep] - mean) / std
    return judge([str(a) for a in lr.predict(xt)], test)


def table(songs: dict[str, list[tuple[str, str, str]]], feats: dict[str, Any],
          runs: int, heads: str | None = None) -> None:
    """Table 3; ``heads``: only the rows whose name starts with one of these (comma-separated)."""
    pairs = [("train-timgm", "same-timgm", "same instruments"),
             ("train-timgm", "shifted-from-timgm", "shifted: TimGM6mb -> others"),
             ("train-fluid", "shifted-from-fluid", "shifted: FluidR3 -> others")]
    rows: list[tuple[str, Head, bool]] = [
        ("svm (the default): linear SVM, mid-end means", head("svm"), True),
        ("svm on float features (not stored)", head("svm"), False),
        ("linear SVM on every feature", svm_all, True),
        ("logistic regression, mid-end means", logistic_mid, True),
        ("linear (Keras): dense on every feature's mean", head("linear"), True),
        ("autopool (Keras MIL; the default before)", head("autopool"), True),
        ("mean (Keras MIL)", head("mean"), True),
        ("attention (Keras MIL)", head("attention"), True),
    ]
    if heads:
        rows = [r for r in rows if any(r[0].startswith(h) for h in heads.split(","))]
    print(f"\n3. Under shift: accuracy (answered) on new songs, mean ± sd over {runs} runs "
          "(seed k, a draw of 80 % of each style's training songs)")
    print("| head | " + " | ".join(p[2] for p in pairs) + " | train s |")
    print("|---|" + "---|" * (len(pairs) + 1))
    for name, fn, stored in rows:
        cells, secs = [], []
        for tr, te, _ in pairs:
            train_all, test = bags(tr, songs, feats, stored), bags(te, songs, feats, stored)
            got = []
            for k in range(runs):
                t = time.perf_counter()
                got.append(fn(draw(train_all, k), test, k))
                secs.append(time.perf_counter() - t)
            accs = [a for a, _ in got]
            cells.append(f"{np.mean(accs):.3f} ± {np.std(accs):.3f} "
                         f"({np.mean([c for _, c in got]):.0%})")
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(secs):.1f} |", flush=True)
    for tr, te, label in pairs[1:]:
        train_all, test = bags(tr, songs, feats), bags(te, songs, feats)
        counts = Counter(f.genres[0] for f in train_all.files)
        for r in baselines(counts, test, sorted(STYLES), "musicnn"):
            note = f" ({r.notes[0]})" if r.notes else ""
            print(f"| baseline, {label}: {r.name}{note} | accuracy {r.accuracy:.3f} | "
                  f"balanced {r.balanced_accuracy:.3f} | answered {r.coverage:.0%} | |")
