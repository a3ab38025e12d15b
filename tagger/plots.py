"""Pictures: a track's genres over time (``show --plot``), the library's genres and confidence
(``stats --plot``), a model's confusion matrix (``evaluate``).

Plotting is an optional extra (``pip install ".[plots]"``: matplotlib); without it
:func:`require` says how to get it before any work is done. Figures are built with matplotlib's
object API (no pyplot: no global figure state, no display needed). Every PNG carries what it
draws as JSON in a ``Series`` text chunk, so a test (or a person) can check a picture's numbers
without reading pixels; files are written whole or not at all.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagger.errors import EnvironmentProblem, install_hint

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tagger.training.metrics import Report

HINT = f"pictures need matplotlib: {install_hint('plots')}"
#: At most this many genre lines in a timeline (the chosen ones always among them).
TIMELINE_GENRES = 6


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require() -> None:
    """Say how to get pictures, before a command does any work for one."""
    if not available():
        raise EnvironmentProblem(HINT)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Figure, path: str | Path, series: Mapping[str, Any]) -> None:
    """Write the PNG next to its final name, then rename: never half a picture."""
    from tagger import __version__

    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        fig.savefig(tmp, format="png", metadata={
            "Software": f"genre-tagger {__version__}", "Series": json.dumps(series)})
        os.replace(tmp, path)
    except OSError as e:  # named by the file asked for, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


def _text(s: str) -> str:
    """A name as literal text: matplotlib reads ``$...$`` as math (a file "$uicideboy$.mp3")."""
    return s.replace("$", r"\$")


def _clock(seconds: float, _pos: Any = None) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def timeline_png(path: str | Path, title: str, times: Sequence[float],
                 series: Mapping[str, Sequence[float]], chosen: Sequence[tuple[str, float]],
                 threshold: float | None, note: str = "") -> None:
    """Genre scores window by window. ``series``: genre -> one score per time (your words),
    strongest first; the ``chosen`` genres are drawn bold and named in the legend with the
    song's score; ``threshold``: the minimum confidence (None for a trained model's own)."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    fig = _figure(9, 4.2)
    ax = fig.add_subplot()
    picked = {g: s for g, s in chosen}
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]
    for i, (genre, ys) in enumerate(series.items()):
        mine = genre in picked
        label = _text(f"{genre}  (chosen, {picked[genre]:.2f})" if mine else genre)
        ax.plot(times, ys, marker="o", markersize=3.5 if mine else 2.5,
                linewidth=2.6 if mine else 1.1, linestyle="-" if mine else "--",
                alpha=1.0 if mine else 0.75, color=colours[i % len(colours)], label=label,
                zorder=3 if mine else 2)
    if threshold is not None:
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=1,
                   label=f"minimum confidence {threshold:g}")
    ax.set_ylim(0, 1)
    if times:
        span = max(times) - min(times)
        ax.set_xlim(min(times) - 0.03 * span - 1, max(times) + 0.03 * span + 1)
    if times:  # ticks on round clock times: 10 s, 30 s, 1 min, 2 min, 5 min apart
        step = next((t for t in (10, 30, 60, 120) if max(times) / t <= 10), 300)
        ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.xaxis.set_major_formatter(FuncFormatter(_clock))
    ax.set_xlabel("time in the track (window centres)")
    ax.set_ylabel("genre score")
    ax.grid(True, alpha=0.3)
    ax.set_title(_text(title), fontsize=10, loc="left")
    if note:
        ax.text(0.0, -0.2, _text(note), transform=ax.transAxes, fontsize=8, color="dimgrey")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    _save(fig, path, {"kind": "timeline", "times": [round(t, 2) for t in times],
                      "series": {g: [round(float(v), 4) for v in ys] for g, ys in series.items()},
                      "chosen": [g for g, _ in chosen], "threshold": threshold})


def stats_png(path: str | Path, genres: Mapping[str, int], best: Sequence[float],
              threshold: float, files: int, abstained: int) -> None:
    """Left: how many files carry each genre (the most common 25). Right: the best genre's
    score per analysed file, with the minimum confidence marked."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    fig = _figure(11, 5.2)
    left, right = fig.subplots(1, 2, width_ratios=[1.15, 1])
    top = sorted(genres.items(), key=lambda kv: (-kv[1], kv[0]))[:25]
    names = [_text(g) for g, _ in reversed(top)]
    counts = [n for _, n in reversed(top)]
    left.barh(names, counts, color="#1f77b4")
    for y, n in enumerate(counts):
        left.text(n, y, f" {n}", va="center", fontsize=7)
    if not top:
        left.text(0.5, 0.5, "no genres chosen yet (run genre-tagger scan)", ha="center",
                  transform=left.transAxes, color="dimgrey")
        left.set_yticks([])
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("files")
    left.set_title(f"genres chosen ({files} files analysed, {abstained} abstained)",
                   fontsize=10, loc="left")
    left.tick_params(axis="y", labelsize=8)
    left.margins(x=0.12)
    edges = np.linspace(0, 1, 21)
    hist, _ = np.histogram(np.clip(best, 0, 1), bins=edges)
    right.bar(edges[:-1], hist, width=0.05, align="edge", color="#2ca02c", edgecolor="white")
    right.axvline(threshold, color="grey", linestyle=":", label=f"minimum confidence {threshold:g}")
    right.set_xlim(0, 1)
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_xlabel("best genre score of the file")
    right.set_ylabel("files")
    right.set_title("confidence", fontsize=10, loc="left")
    right.legend(fontsize=8, frameon=False)
    _save(fig, path, {"kind": "stats", "genres": dict(top), "files": files,
                      "abstained": abstained, "threshold": threshold,
                      "histogram": {"edges": [round(float(e), 2) for e in edges],
                                    "counts": [int(c) for c in hist]}})


def confusion_png(report: Report, path: str | Path) -> None:
    """Rows: the true genre; columns: the answer (last: abstained). Each cell shows the count
    and is shaded by the row's share, so small genres read as clearly as big ones."""
    import numpy as np

    from tagger.training.metrics import ABSTAIN

    cols = [*report.classes, ABSTAIN]
    counts = np.asarray(report.confusion, dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(report.classes)
    width = max(4.5, 1.0 + 0.62 * len(cols))
    fig = _figure(width, max(3.8, 1.6 + 0.5 * n))
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for i in range(n):
        for j in range(len(cols)):
            v = int(counts[i, j])
            ax.text(j, i, str(v), ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.6 else "black",
                    fontweight="bold" if i == j else "normal")
    ax.set_xticks(range(len(cols)), [_text(c) for c in cols], rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), [_text(c) for c in report.classes], fontsize=8)
    ax.set_xlabel("answer")
    ax.set_ylabel("true genre")
    # Wrapped to the figure (a long model name ran off its edge): about 13 characters of 9-pt
    # text per inch.
    title = _text(f"{report.name}: accuracy {report.accuracy:.2f}, macro-F1 "
                  f"{report.macro_f1:.2f} (n={report.n})")
    ax.set_title(textwrap.fill(title, int(width * 13)), fontsize=9, loc="left")
    _save(fig, path, {"kind": "confusion", "classes": report.classes, "columns": cols,
                      "matrix": [[int(v) for v in row] for row in report.confusion]})


__all__ = ["HINT", "available", "confusion_png", "require", "stats_png", "timeline_png"]
