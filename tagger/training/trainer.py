"""``train`` and ``evaluate``: labelled files -> features -> a head -> a model file, or scores.

Features come from the cache when the audio was analysed before (by any front door, by its audio
identity), else from the engine, which stores them: retraining after adding labels decodes only
the new files.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tagger import __version__
from tagger.analysis.config import EngineConfig
from tagger.analysis.embedding import unpack
from tagger.analysis.model.catalog import model_version
from tagger.analysis.model.resolved import open_model
from tagger.analysis.model.runner import installed, require_keras
from tagger.analysis.model.trained import (
    DEFAULT_POOLING,
    Float32Array,
    Pooling,
    TrainedModel,
    forward,
    save,
)
from tagger.analysis.model.trained import load as load_model
from tagger.analysis.taxonomy import GENRES, genre_scores
from tagger.analysis.vocabulary import GenreMap
from tagger.cache import Cache
from tagger.errors import EnvironmentProblem, TrainingError, install_hint
from tagger.library.scores import ScoreSource
from tagger.settings import Settings
from tagger.training.labels import Labelled, LabelSet
from tagger.training.margin import OutOfFold
from tagger.training.metrics import (
    Report,
    best_thresholds,
    group_folds,
    group_split,
    mean_report,
    score,
)

Say = Callable[[str], None]
#: A fitted head: its arrays (with the scaling), per-class thresholds, and a summary.
Fitted = tuple[dict[str, Float32Array], np.ndarray, dict[str, Any]]


@dataclass(frozen=True)
class TrainOptions:
    pooling: Pooling = DEFAULT_POOLING
    epochs: int = 200
    patience: int = 20
    seed: int = 0
    #: Share of the training songs (whole groups) held out to stop early and fit thresholds.
    validation: float = 0.2


@dataclass
class Bags:
    """The labelled files that have features, and their bags; the others, with why not."""

    files: list[Labelled]
    bags: list[Float32Array]
    raw: list[dict[str, float]]  # the base model's raw tag scores (zero-shot baseline)
    failures: list[tuple[str, str]] = field(default_factory=list)
    from_cache: int = 0
    analysed: int = 0

    def subset(self, idx: Sequence[int]) -> Bags:
        return Bags([self.files[i] for i in idx], [self.bags[i] for i in idx],
                    [self.raw[i] for i in idx])


def require_learner(pooling: Pooling, extra: str = "train") -> None:
    """Say what to install before any work starts: the default head learns with scikit-learn
    (the ``learn`` extra, which ``learn`` names; ``train`` has it too), the Keras heads with
    Keras and TensorFlow (the ``train`` extra)."""
    if pooling != "svm":
        require_keras("train")
        return
    if not installed("sklearn"):
        raise EnvironmentProblem(f"{'learning' if extra == 'learn' else 'training'} needs "
                                 "scikit-learn, which the core install leaves out: "
                                 f"{install_hint(extra)}")


def gather(labels: LabelSet, config: EngineConfig, cache: Cache, say: Say) -> Bags:
    """Every labelled file's bag: stored features by audio identity, else analysed (and stored)."""
    got = ScoreSource(config, cache).features([f.path for f in labels.files], say)
    files = [f for f in labels.files if f.path in got.found]
    return Bags(files, [unpack(got.found[f.path].data) for f in files],
                [got.found[f.path].raw_scores for f in files], got.failures,
                from_cache=got.from_cache, analysed=len(labels.files) - got.from_cache - len(got.failures))


def features_for(labels: LabelSet, settings: Settings, cache: Cache,
                 say: Say) -> tuple[Bags, str]:
    """The labelled files' bags under the settings' base model (analysing what the cache
    lacks), and that model's name. Files that cannot be analysed are said and left out."""
    model = open_model(settings.model)
    data = gather(labels, model.learning_config(settings.engine_config()), cache, say)
    for path, reason in data.failures:
        say(f"error {path}: {reason}")
    if data.failures:
        say(f"{len(data.failures)} files could not be analysed and are left out")
    return data, model.base


def _targets(files: Sequence[Labelled], classes: list[str]) -> Float32Array:
    y = np.zeros((len(files), len(classes)), np.float32)
    index = {c: i for i, c in enumerate(classes)}
    for i, f in enumerate(files):
        for g in f.genres:
            if g in index:
                y[i, index[g]] = 1.0
    return y


def _weights(y: Float32Array) -> Float32Array:
    """Per-song weights that give every class the same total weight (imbalance)."""
    counts = np.maximum(y.sum(axis=0), 1.0)
    per_class = len(y) / (len(counts) * counts)
    w: Float32Array = ((y * per_class).sum(axis=1) / np.maximum(y.sum(axis=1), 1.0)).astype(np.float32)
    return w


def _scale(bags: Sequence[Float32Array]) -> tuple[Float32Array, Float32Array]:
    allx = np.concatenate(bags).astype(np.float64)
    mean, std = allx.mean(axis=0), allx.std(axis=0)
    std[std < 1e-6] = 1.0  # constant features (a ReLU that never fires) stay as they are
    return mean.astype(np.float32), std.astype(np.float32)


def main_labels(files: Sequence[Labelled]) -> list[str]:
    return [f.genres[0] for f in files]


def fit_model(data: Bags, classes: list[str], multi_label: bool, options: TrainOptions,
              say: Say) -> Fitted:
    """A head on ``data``: weights (with the scaling), per-class thresholds, and a summary.

    The default (``svm``) needs no early stopping: it cross-validates over whole groups of
    every song (:mod:`tagger.training.margin`). The Keras heads hold out whole groups to stop
    early and fit the thresholds; with too few groups they train on everything and the
    thresholds stay at their defaults."""
    if options.pooling == "svm":
        return fit_svm(data, classes, multi_label, options, say)[:3]
    return _fit_keras(data, classes, multi_label, options, say)


def fit_svm(data: Bags, classes: list[str], multi_label: bool, options: TrainOptions, say: Say,
            ) -> tuple[dict[str, Float32Array], np.ndarray, dict[str, Any], OutOfFold | None]:
    """The default head (:func:`fit_model`), with its out-of-fold probabilities: each song's
    from the fold that held its group out (what learning judges a candidate on)."""
    from tagger.training import margin

    y = _targets(data.files, classes)
    kind = "several labels per song" if multi_label else "one label per song"
    say(f"training a linear SVM head on the mid-end features: {len(data.files)} songs, "
        f"{len(classes)} classes ({kind})")
    arrays, oof, summary = margin.fit(data.bags, y, _weights(y), main_labels(data.files),
                                      [f.group for f in data.files], multi_label, options.seed,
                                      say)
    thresholds = margin.thresholds(oof, y, multi_label)
    if oof is not None:
        say(f"  thresholds (from held-out groups) "
            f"{', '.join(f'{c} {t:.2f}' for c, t in zip(classes, thresholds))}")
        for line in validation_warnings(classes, y[oof.index], thresholds, multi_label,
                                        "the choice of C and the thresholds"):
            say(f"  note: {line}")
    elif not multi_label:
        say("  note: every threshold is 0.00: the model never abstains; whenever a genre is the "
            "most likely one, it is written")
    return arrays, thresholds, summary, oof


def _fit_keras(data: Bags, classes: list[str], multi_label: bool, options: TrainOptions,
               say: Say) -> Fitted:
    from tagger.training import head

    groups = [f.group for f in data.files]
    labels = main_labels(data.files)
    y_all = _targets(data.files, classes)
    train_idx, val_idx = group_split(labels, groups, options.validation, options.seed)
    if len({groups[i] for i in val_idx}) < 2 or not train_idx:
        train_idx, val_idx = list(range(len(data.files))), []
        say("  too few groups to hold any out for validation: training on every file")
    mean, std = _scale([data.bags[i] for i in train_idx])
    scaled = [(b - mean) / std for b in data.bags]
    x, m = head.pad([scaled[i] for i in train_idx])
    y = y_all[train_idx]
    val = None
    if val_idx:
        xv, mv = head.pad([scaled[i] for i in val_idx])
        val = (xv, mv, y_all[val_idx])
    kind = "several labels per song" if multi_label else "one label per song"
    article = "an" if options.pooling[0] in "aeiou" else "a"
    say(f"training {article} {options.pooling} head: {len(train_idx)} songs, {len(val_idx)} for "
        f"validation, {len(classes)} classes ({kind})")
    weights, curve = head.fit(options.pooling, x, m, y, _weights(y), val, multi_label,
                              options.seed, options.epochs, options.patience, say)
    arrays = {**weights, "scale/mean": mean, "scale/std": std}
    thresholds = np.full(len(classes), 0.5 if multi_label else 0.0, np.float32)
    summary: dict[str, Any] = {"curve": curve, "train_songs": len(train_idx),
                               "validation_songs": len(val_idx)}
    if val is not None:
        raw = [data.bags[i] for i in val_idx]
        xr, mr = head.pad(raw)
        probs = forward(options.pooling, arrays, xr, mr, multi_label)
        thresholds = best_thresholds(probs, y_all[val_idx], multi_label)
        best = min(curve, key=lambda p: p.get("val_loss", np.inf))
        say(f"  best epoch {best['epoch']} (validation loss {best.get('val_loss', 0):.4f}); "
            f"thresholds {', '.join(f'{c} {t:.2f}' for c, t in zip(classes, thresholds))}")
        summary["best_epoch"] = best["epoch"]
        for line in validation_warnings(classes, y_all[val_idx], thresholds, multi_label):
            say(f"  note: {line}")
    return arrays, thresholds, summary


#: Below this many validation songs in all, or THRESHOLD_SONGS of a genre, the early stop and
#: the thresholds rest on too little to trust (4 genres x 12 files gave 10 validation songs,
#: a best epoch of 3 and every threshold 0.00).
VALIDATION_SONGS = 20
THRESHOLD_SONGS = 3


def validation_warnings(classes: Sequence[str], truth: np.ndarray, thresholds: np.ndarray,
                        multi_label: bool, resting: str = "the best epoch and the thresholds",
                        ) -> list[str]:
    """What a person should know about a small validation set, in words: too few songs in all
    (``resting``: what was chosen on them), genres with too few to fit a threshold, and what a
    threshold of 0.00 means."""
    out = []
    n = len(truth)
    if n < VALIDATION_SONGS:
        out.append(f"only {n} songs were held out for validation (fewer than "
                   f"{VALIDATION_SONGS}): {resting} rest on too little "
                   "to trust; label more songs, and measure with 'evaluate --folds 5'")
    thin = [c for c, k in zip(classes, truth.sum(axis=0)) if k < THRESHOLD_SONGS]
    if thin:
        default = "0.50" if multi_label else "0.00"
        out.append(f"too few validation songs (under {THRESHOLD_SONGS}) to fit a threshold for "
                   f"{', '.join(thin)}: they keep {default}")
    zero = [c for c, t in zip(classes, thresholds) if float(t) == 0.0]
    if zero and not multi_label:
        out.append(f"a threshold of 0.00 ({', '.join(zero)}) means the model never abstains "
                   "for that genre: whenever it is the most likely one, it is written")
    elif zero:
        out.append(f"a threshold of 0.00 ({', '.join(zero)}) with several genres per song "
                   "means that genre is written on every song: label more songs of it")
    return out


def train(data: Bags, base: str, options: TrainOptions, out: str, say: Say,
          source: str, vocabulary: Sequence[str] = ()) -> TrainedModel:
    """Train on every file of ``data`` and write the model file. ``vocabulary``: every genre
    name the labels had (a genre map may name those without it being a typo)."""
    classes = sorted({g for f in data.files for g in f.genres})
    if len(classes) < 2:
        raise TrainingError("at least two genres with analysable files are needed")
    multi_label = any(len(f.genres) > 1 for f in data.files)
    fitted = fit_model(data, classes, multi_label, options, say)
    return save_model(data, base, options, out, source, vocabulary, fitted)


def save_model(data: Bags, base: str, options: TrainOptions, out: str, source: str,
               vocabulary: Sequence[str], fitted: Fitted) -> TrainedModel:
    """Write the model file of a head fitted on every file of ``data``."""
    arrays, thresholds, summary = fitted
    classes = sorted({g for f in data.files for g in f.genres})
    multi_label = any(len(f.genres) > 1 for f in data.files)
    counts = Counter(g for f in data.files for g in f.genres)
    meta = {
        "name": os.path.basename(out).removesuffix(".npz"),
        "classes": classes, "thresholds": [round(float(t), 4) for t in thresholds],
        "multi_label": multi_label, "pooling": options.pooling, "feature": "pooled",
        "dims": int(data.bags[0].shape[1]), "base": base, "base_version": model_version(base),
        # No creation time: the same labels and seed must give the same file (and version).
        "seed": options.seed, "genre_tagger": __version__,
        "training": {"source": source, "songs": len(data.files), "counts": dict(counts),
                     "groups": len({f.group for f in data.files}),
                     "vocabulary": sorted(set(vocabulary) - set(classes)), **summary},
    }
    save(out, meta, arrays)
    return load_model(out)


# --- evaluation ----------------------------------------------------------------------------------


def _simple(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.casefold().replace("&", "n"))


def same_genre(a: str, b: str) -> bool:
    """One genre, case, spaces and punctuation aside (``hiphop`` and Hip-Hop)."""
    return _simple(a) == _simple(b)


def zero_shot_map(classes: Sequence[str]) -> dict[str, str]:
    """Class -> the shipped taxonomy's genre of the same name (case, spaces and punctuation
    aside: ``hiphop`` is Hip-Hop, ``rnb`` R&B)."""
    ours = {_simple(g.name): g.name for g in GENRES}
    return {c: ours[_simple(c)] for c in classes if _simple(c) in ours}


def predictions(model_probs: Float32Array, classes: list[str], thresholds: np.ndarray,
                multi_label: bool) -> list[str | None]:
    """Each song's answer: its best class if over that class's threshold, else None."""
    out: list[str | None] = []
    for p in model_probs:
        best = int(np.argmax(p))
        out.append(classes[best] if p[best] >= thresholds[best] else None)
    return out


def _truth(files: Sequence[Labelled], answers: Sequence[str | None]) -> list[str]:
    """The label an answer is judged against: the answer itself if the song carries it
    (several labels per song), else the song's main label."""
    return [a if a is not None and a in f.genres else f.genres[0] for f, a in zip(files, answers)]


def judge(name: str, classes: list[str], files: Sequence[Labelled],
          answers: Sequence[str | None]) -> Report:
    return score(name, classes, _truth(files, answers), answers)


def baselines(train_counts: Counter[str], test: Bags, classes: list[str], base: str) -> list[Report]:
    """The majority class of the training songs, and the shipped model's zero-shot answer
    among the classes whose names it knows."""
    majority = max(sorted(train_counts), key=lambda c: train_counts[c])
    reports = [judge(f"majority class ({majority})", classes, test.files, [majority] * len(test.files))]
    mapping = zero_shot_map(classes)
    from tagger.analysis.model.catalog import get_model

    tags = get_model(base).tags
    if len(mapping) < 2:
        reports[0].notes.append(
            "no zero-shot baseline: " + (f"only {', '.join(mapping)} is" if mapping else "none of "
                                         "the classes is") + " a genre the shipped model names")
        return reports
    keep = [i for i, f in enumerate(test.files) if f.genres[0] in mapping]
    answers: list[str | None] = []
    for i in keep:
        raw = test.raw[i]
        gs = genre_scores(tags, np.asarray([raw.get(t, 0.0) for t in tags], np.float32))
        answers.append(max(mapping, key=lambda c: (gs.get(mapping[c], 0.0), c)))
    files = [test.files[i] for i in keep]
    r = judge(f"shipped {base}, zero-shot", classes, files, answers)
    r.notes.append(f"only the {len(mapping)} classes the shipped model names "
                   f"({', '.join(sorted(mapping))}): {len(keep)} of {len(test.files)} test songs")
    return [*reports, r]


def evaluate_split(data: Bags, train_idx: Sequence[int], test_idx: Sequence[int], base: str,
                   options: TrainOptions, say: Say) -> list[Report]:
    """Train on ``train_idx``, judge on ``test_idx``, with both baselines on the same songs."""
    classes = sorted({g for f in data.files for g in f.genres})
    multi_label = any(len(f.genres) > 1 for f in data.files)
    train_set, test_set = data.subset(train_idx), data.subset(test_idx)
    arrays, thresholds, _ = fit_model(train_set, classes, multi_label, options, say)
    from tagger.training.head import pad

    x, m = pad(test_set.bags)
    probs = forward(options.pooling, arrays, x, m, multi_label)
    answers = predictions(probs, classes, thresholds, multi_label)
    model_report = judge(f"trained ({options.pooling})", classes, test_set.files, answers)
    forced = [classes[int(np.argmax(p))] for p in probs]
    top1 = judge("trained, never abstaining", classes, test_set.files, forced)
    model_report.notes.append(f"without abstaining: accuracy {top1.accuracy:.3f}, macro-F1 "
                              f"{top1.macro_f1:.3f}")
    counts = Counter(g for f in train_set.files for g in f.genres)
    return [model_report, *baselines(counts, test_set, classes, base)]


def evaluate_model(model: TrainedModel, data: Bags,
                   genre_map: GenreMap | None = None) -> list[Report]:
    """A trained model on every labelled file (none of them should be its training songs).
    With a genre map, the model's classes are judged in the map's words, as the labels are."""
    from tagger.training.head import pad

    mine = genre_map.from_model if genre_map is not None else str
    classes = list(dict.fromkeys(mine(c) for c in model.classes))
    known = [i for i, f in enumerate(data.files) if f.genres[0] in classes]
    test = data.subset(known)
    x, m = pad(test.bags)
    probs = forward(model.pooling, model.arrays, x, m, model.multi_label)
    answers = [None if a is None else mine(a)
               for a in predictions(probs, model.classes, model.thresholds, model.multi_label)]
    r = judge(f"model {model.version}", classes, test.files, answers)
    if len(known) < len(data.files):
        r.notes.append(f"{len(data.files) - len(known)} songs whose genre the model does not know "
                       "were left out")
    counts: Counter[str] = Counter()
    for c, n in model.meta["training"]["counts"].items():
        counts[mine(c)] += int(n)
    return [r, *baselines(counts, test, classes, model.base)]


def cross_validate(data: Bags, folds: int, base: str, options: TrainOptions,
                   say: Say) -> list[tuple[Report, dict[str, float]]]:
    """K-fold cross-validation over whole groups; every report pooled over the folds."""
    groups = [f.group for f in data.files]
    if len(set(groups)) < folds:
        raise TrainingError(f"{folds} folds need at least {folds} groups (artists, albums or "
                            f"folders); the labels have {len(set(groups))}")
    parts = group_folds(main_labels(data.files), groups, folds, options.seed)
    per_fold: list[list[Report]] = []
    for k, test_idx in enumerate(parts, 1):
        say(f"fold {k}/{folds}: {len(test_idx)} test songs")
        test = set(test_idx)
        train_idx = [i for i in range(len(data.files)) if i not in test]
        per_fold.append(evaluate_split(data, train_idx, test_idx, base, options, say))
    out = []
    for j in range(len(per_fold[0])):
        reports = [fold[j] for fold in per_fold if j < len(fold)]
        pooled, spread = mean_report(reports[0].name, reports)
        pooled.notes = reports[0].notes[-1:] if j else []
        out.append((pooled, spread))
    return out


def evaluate(data: Bags, base: str, options: TrainOptions, say: Say,
             model: TrainedModel | None = None, genre_map: GenreMap | None = None,
             folds: int | None = None,
             test_share: float = 0.25) -> list[tuple[Report, dict[str, float] | None]]:
    """What ``evaluate`` reports, each with its spread over folds (None from one split): a
    trained ``model`` judged on every song; else heads trained and judged by grouped ``folds``,
    else on one grouped split holding out ``test_share`` of the songs."""
    if model is not None:
        return [(r, None) for r in evaluate_model(model, data, genre_map)]
    if folds:
        return [(r, s) for r, s in cross_validate(data, folds, base, options, say)]
    train_idx, test_idx = group_split(main_labels(data.files), [f.group for f in data.files],
                                      test_share, options.seed)
    say(f"split: {len(train_idx)} songs to train, {len(test_idx)} to test "
        "(no artist, album or folder on both sides)")
    return [(r, None) for r in evaluate_split(data, train_idx, test_idx, base, options, say)]
