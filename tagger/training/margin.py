"""The default head: a linear SVM on a song's mean mid-end features (issue 25).

A person's library is not one recording session: the same genre arrives from other studios,
instruments, encoders and decades. On ``bench/bench_train.py``'s shifted benchmark (trained on
songs played with one soundfont, judged on new songs played with others and each put through its
own encoder, loudness, EQ and sample rate) the Keras MIL heads over every stored feature kept
0.64-0.79 of the new songs; this head keeps 0.88 and 0.89 (both directions between two
instrument sets, mean of 3 draws). Two things made the difference, each measured alone there:

* the mid end's channels only (:func:`~tagger.analysis.model.network.midend_features`):
  deeper than the front end's, they carry rhythm and texture more than timbre;
* a hinge loss (a linear SVM) rather than a logistic one: it ignores the songs already far on
  the right side, so no single instrument's quirks pull the boundary (logistic regression on the
  same features: 0.87 and 0.74).

Nothing here stops early, so ten songs are enough to train on: the regularisation is chosen by
grouped cross-validation over every labelled song, and the same out-of-fold margins (each from a
model that never saw that song's artist, album or folder) set the temperature that turns margins
into probabilities and each class's threshold. The result is a ``linear`` head's arrays (mean,
scale, one dense layer; zero weights outside the mid end), which
:func:`tagger.analysis.model.trained.forward` already computes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tagger.analysis.model.network import midend_features
from tagger.analysis.model.trained import Float32Array, sigmoid, softmax
from tagger.training.metrics import best_thresholds, group_folds

#: Regularisation tried by cross-validation (larger: a tighter fit to the training songs).
CS = (0.003, 0.01, 0.03, 0.1)
#: With too few groups to cross-validate: the best on the benchmark in both directions.
DEFAULT_C = 0.03
#: At most this many folds; at least MIN_GROUPS groups to hold any out.
FOLDS = 5
MIN_GROUPS = 3
#: Temperatures tried for the margins' softmax (or sigmoid).
TEMPERATURES = np.geomspace(0.1, 100.0, 61)
#: The temperature is fitted to labels smoothed by this much: when every held-out song is
#: right (rendered grooves, a tidy label set) the plain loss falls forever with the temperature
#: and every answer became "1.00", a style never taught included.
SMOOTHING = 0.05

F64 = npt.NDArray[np.float64]


def song_means(bags: Sequence[Float32Array]) -> F64:
    """Each song's instances averaged: the same numbers the linear forward pass pools."""
    return np.stack([np.asarray(b, np.float64).mean(axis=0) for b in bags])


def _fit(x: F64, y: Float32Array, w: Float32Array, c: float, seed: int) -> tuple[F64, F64]:
    """One binary SVM per class (one against the rest): (features, classes) weights, biases."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    coef = np.zeros((x.shape[1], y.shape[1]))
    bias = np.full(y.shape[1], -1.0)  # a class with no songs here is never said
    for k in range(y.shape[1]):
        target = y[:, k] > 0
        if target.all() or not target.any():
            bias[k] = 1.0 if target.all() else -1.0
            continue
        svm = LinearSVC(C=c, dual=True, max_iter=20_000, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # its answer is still the best
            svm.fit(x, target.astype(int), sample_weight=w)
        coef[:, k], bias[k] = svm.coef_[0], svm.intercept_[0]
    return coef, bias


def _act(z: F64, multi_label: bool) -> F64:
    """The forward pass's own activation (a sigmoid per genre, or a softmax over them)."""
    out: F64 = sigmoid(z) if multi_label else softmax(z, 1)
    return out


def _loss(probs: F64, y: Float32Array, multi_label: bool) -> float:
    p = np.clip(probs, 1e-9, 1 - 1e-9)
    k = 2 if multi_label else y.shape[1]
    y = y * (1 - SMOOTHING) + SMOOTHING / k
    if multi_label:
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
    return float(-(y * np.log(p)).sum(axis=1).mean())


def _balanced(margins: F64, y: Float32Array, main: Sequence[str]) -> float:
    """Balanced accuracy of each song's best class (right when the song carries it)."""
    right = y[np.arange(len(y)), margins.argmax(axis=1)] > 0
    per = [float(right[[i for i, m in enumerate(main) if m == c]].mean()) for c in sorted(set(main))]
    return float(np.mean(per))


@dataclass(frozen=True)
class OutOfFold:
    """Probabilities for the songs some fold held out, each from a model that never saw its
    group: ``probs[i]`` is song ``index[i]``'s."""

    probs: F64
    index: list[int]


def _judgeable(folds: list[list[int]], y: Float32Array) -> list[list[int]]:
    """The folds whose held-out genres all have songs on the training side: a fold holding out
    a genre's only group (one artist per genre) can only be wrong, and says nothing about C."""
    out = []
    for test in folds:
        train = np.setdiff1d(np.arange(len(y)), test)
        if np.all(y[train].sum(axis=0)[y[test].sum(axis=0) > 0] > 0):
            out.append(test)
    return out


def fit(bags: Sequence[Float32Array], y: Float32Array, w: Float32Array, main: Sequence[str],
        groups: Sequence[str], multi_label: bool, seed: int, say: Callable[[str], None],
        midend: bool = True) -> tuple[dict[str, Float32Array], OutOfFold | None, dict[str, Any]]:
    """The head's arrays, its out-of-fold probabilities (None with too few groups to hold any
    out) and a summary (C per fold score, the temperature, the folds). ``midend``: only the mid
    end's features (every feature otherwise: the benchmark's comparison)."""
    means = song_means(bags)
    dims = means.shape[1]
    keep = (midend_features(dims) if midend else None) or list(range(dims))
    mean, std = np.zeros(dims), np.ones(dims)
    mean[keep], std[keep] = means[:, keep].mean(axis=0), means[:, keep].std(axis=0)
    std[std < 1e-6] = 1.0  # a channel that never varies stays as it is
    x = ((means - mean) / std)[:, keep]
    n_groups = len(set(groups))
    summary: dict[str, Any] = {"head": "linear SVM", "features": "mid-end" if len(keep) < dims
                               else "all", "train_songs": len(bags)}
    oof: OutOfFold | None = None
    temperature, c = 3.0, DEFAULT_C
    folds = (_judgeable([f for f in group_folds(main, groups, min(FOLDS, n_groups), seed) if f], y)
             if n_groups >= MIN_GROUPS else [])
    if len(folds) >= 2:
        held = sorted(i for f in folds for i in f)
        yh, mainh = y[held], [main[i] for i in held]
        scores, margins = {}, {}
        for cand in CS:
            m = np.zeros_like(y, dtype=np.float64)
            for test in folds:
                train = np.setdiff1d(np.arange(len(x)), test)
                coef, bias = _fit(x[train], y[train], w[train], cand, seed)
                m[test] = x[test] @ coef + bias
            scores[cand], margins[cand] = _balanced(m[held], yh, mainh), m[held]
        c = max(CS, key=lambda k: (scores[k], -k))  # ties: the more regularised
        losses = [_loss(_act(t * margins[c], multi_label), yh, multi_label) for t in TEMPERATURES]
        at = int(np.argmin(losses))
        temperature = float(TEMPERATURES[at])
        oof = OutOfFold(_act(temperature * margins[c], multi_label), held)
        say(f"  C by {len(folds)}-fold grouped cross-validation (balanced accuracy): "
            + ", ".join(f"{k:g} {v:.3f}" for k, v in scores.items()) + f" -> C {c:g}")
        if at in (0, len(TEMPERATURES) - 1):
            say(f"  note: the held-out songs set the temperature at the end of its range "
                f"({temperature:g}): the scores' sizes mean little; label more groups")
        summary.update(folds=len(folds), cv={f"{k:g}": round(v, 4) for k, v in scores.items()},
                       validation_songs=len(held))
    else:
        why = (f"only {n_groups} groups (artists, albums or folders)" if n_groups < MIN_GROUPS
               else "each genre's songs share too few groups (holding one out leaves its genre "
                    "without songs)")
        say(f"  {why}: too few to cross-validate; C {c:g}, and the thresholds keep their "
            "defaults")
        summary["validation_songs"] = 0
    coef, bias = _fit(x, y, w, c, seed)
    kernel = np.zeros((dims, y.shape[1]))
    kernel[keep] = temperature * coef
    arrays = {"out/kernel": kernel.astype(np.float32),
              "out/bias": (temperature * bias).astype(np.float32),
              "scale/mean": mean.astype(np.float32), "scale/std": std.astype(np.float32)}
    summary.update(C=c, temperature=round(temperature, 4))
    return arrays, oof, summary


def thresholds(oof: OutOfFold | None, y: Float32Array, multi_label: bool) -> Float32Array:
    """Per-class thresholds from the out-of-fold probabilities (held-out groups), else the
    defaults: 0.5 with several labels per song, 0 (never abstain) with one.

    With one label per song, the lowest threshold that does best there, not the middle of those
    that do: held-out groups of the person's own labels are surer than new songs recorded
    otherwise, and the middle made the head abstain on 12-25 % of the shifted test songs it
    would have got right (tests/test_shift.py). With several, the middle: there a threshold of
    0.00 would say the genre of every song."""
    if oof is None:
        return np.full(y.shape[1], 0.5 if multi_label else 0.0, np.float32)
    return np.asarray(best_thresholds(oof.probs, y[oof.index], multi_label,
                                      lowest=not multi_label), np.float32)
