"""Splits and scores: pure functions over labels, groups and predictions.

Songs are judged by their first (main) label against the model's answer, where an abstention
(``None``) counts as wrong: a tool that abstains must earn it. Balanced accuracy and macro-F1
weigh every genre alike, so always answering the biggest genre scores what it deserves.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ABSTAIN = "(abstained)"


def group_split(labels: Sequence[str], groups: Sequence[str], test_fraction: float,
                seed: int) -> tuple[list[int], list[int]]:
    """(train, test) indices; no group on both sides, each label's share close to
    ``test_fraction`` in test (where its groups allow), the same for the same seed."""
    folds = group_folds(labels, groups, max(2, round(1 / test_fraction)), seed)
    test = set(folds[0])
    return [i for i in range(len(labels)) if i not in test], sorted(test)


def group_folds(labels: Sequence[str], groups: Sequence[str], k: int, seed: int) -> list[list[int]]:
    """``k`` folds of indices, whole groups each, stratified by the groups' main label:
    each label's groups are dealt round the folds, biggest first, onto the lightest fold."""
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    by_label: dict[str, list[str]] = defaultdict(list)
    for g, idx in members.items():
        main = max(sorted({labels[i] for i in idx}), key=lambda lab: sum(labels[i] == lab for i in idx))
        by_label[main].append(g)
    rng = random.Random(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for label in sorted(by_label):
        gs = sorted(by_label[label])
        rng.shuffle(gs)
        gs.sort(key=lambda g: -len(members[g]))  # stable: shuffled order among equal sizes
        load = [0] * k
        start = rng.randrange(k)
        for g in gs:
            f = min(range(k), key=lambda j: (load[j], len(folds[j]), (j - start) % k))
            folds[f].extend(members[g])
            load[f] += len(members[g])
    return [sorted(f) for f in folds]


@dataclass
class Report:
    """Scores of one model on one set of songs."""

    name: str
    classes: list[str]
    n: int
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    coverage: float  # share of songs answered (not abstained)
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]  # rows: true class; columns: classes then ABSTAIN
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def score(name: str, classes: Sequence[str], truth: Sequence[str],
          predicted: Sequence[str | None]) -> Report:
    """Accuracy, balanced accuracy, macro-F1, per-class P/R/F1/support and the confusion
    matrix of ``predicted`` (None: abstained) against ``truth``."""
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes) + 1), dtype=int)
    for t, p in zip(truth, predicted):
        cm[index[t], index[p] if p is not None and p in index else len(classes)] += 1
    n = int(cm.sum())
    tp = np.diag(cm[:, :len(classes)]).astype(float)
    support = cm.sum(axis=1).astype(float)
    answered = cm[:, :len(classes)].sum(axis=0).astype(float)
    precision = np.divide(tp, answered, out=np.zeros_like(tp), where=answered > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                   where=(precision + recall) > 0)
    present = support > 0
    per_class = {c: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                     "f1": round(float(f1[i]), 4), "support": int(support[i])}
                 for i, c in enumerate(classes)}
    return Report(
        name=name, classes=classes, n=n,
        accuracy=float(tp.sum() / n) if n else 0.0,
        balanced_accuracy=float(recall[present].mean()) if present.any() else 0.0,
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        coverage=float(1 - cm[:, -1].sum() / n) if n else 0.0,
        per_class=per_class, confusion=cm.tolist())


def mean_report(name: str, reports: Sequence[Report]) -> tuple[Report, dict[str, float]]:
    """K folds -> one report over all their songs (confusions summed) and each headline
    number's standard deviation across folds."""
    classes = reports[0].classes
    cm = np.sum([np.asarray(r.confusion) for r in reports], axis=0)
    truth, pred = [], []
    for i, c in enumerate(classes):
        for j in range(len(classes) + 1):
            truth += [c] * int(cm[i, j])
            pred += [classes[j] if j < len(classes) else None] * int(cm[i, j])
    pooled = score(name, classes, truth, pred)
    spread = {k: float(np.std([getattr(r, k) for r in reports]))
              for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    return pooled, spread


def confusion_text(report: Report) -> str:
    """The confusion matrix as aligned text (rows: true genre; columns: answered)."""
    cols = [*report.classes, ABSTAIN]
    short = [c[:max(10, len(ABSTAIN))] for c in cols]
    width = max(5, *(len(s) for s in short))
    label_w = max(4, *(len(c) for c in report.classes))
    lines = [" " * (label_w + 2) + " ".join(s.rjust(width) for s in short)]
    for c, row in zip(report.classes, report.confusion):
        lines.append(c.ljust(label_w) + "  " + " ".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def summary_text(report: Report, spread: dict[str, float] | None = None) -> str:
    def pm(key: str) -> str:
        return f" ± {spread[key]:.3f}" if spread else ""

    head = (f"{report.name}: accuracy {report.accuracy:.3f}{pm('accuracy')}, balanced accuracy "
            f"{report.balanced_accuracy:.3f}{pm('balanced_accuracy')}, macro-F1 "
            f"{report.macro_f1:.3f}{pm('macro_f1')}, answered {report.coverage:.0%} of {report.n}")
    return "\n".join([head, *(f"  note: {n}" for n in report.notes)])


def per_class_text(report: Report) -> str:
    w = max(5, *(len(c) for c in report.classes))
    lines = [f"{'genre'.ljust(w)}  precision  recall     f1  support"]
    for c, m in report.per_class.items():
        lines.append(f"{c.ljust(w)}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  "
                     f"{int(m['support']):7d}")
    return "\n".join(lines)


def best_thresholds(probs: np.ndarray, truth: np.ndarray, multi_label: bool,
                    lowest: bool = False) -> np.ndarray:
    """Per-class thresholds that maximise each class's F1 on validation songs (the middle of
    the range that does, when several do).

    ``truth`` is (songs, classes) 0/1. Single-label models answer their best class only when
    its probability reaches the class's threshold, so a threshold trades a wrong guess for an
    abstention; the grid stops at 0.9 and a class seen too little to judge (fewer than 3
    validation songs) keeps the default, never a threshold fitted to noise.
    """
    grid = np.round(np.arange(0.0, 0.91, 0.05), 2)
    n_classes = probs.shape[1]
    # Unjudged classes: a single-label model answers its best class; a multi-label one says a
    # class when it is more likely than not.
    out = np.full(n_classes, 0.5 if multi_label else 0.0, dtype=np.float32)
    top = probs.argmax(axis=1)
    for c in range(n_classes):
        positives = truth[:, c] > 0
        if positives.sum() < 3:
            continue
        f1s = []
        for t in grid:
            said = (probs[:, c] >= t) if multi_label else ((top == c) & (probs[:, c] >= t))
            tp = float((said & positives).sum())
            f1s.append(2 * tp / max(float(said.sum()) + float(positives.sum()), 1.0))
        best = np.flatnonzero(np.asarray(f1s) >= max(f1s) - 1e-9)
        if lowest:  # out-of-fold songs: the lowest that is as good (a shifted song answers)
            out[c] = float(grid[best].min())
            continue
        # The middle of the best thresholds, not the lowest: as far from the validation songs
        # on either side as they allow, so a song less sure than any of them abstains.
        out[c] = round(float(grid[best].min() + grid[best].max()) / 2 / 0.05) * 0.05
    return out
