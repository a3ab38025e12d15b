"""The adaptive budget: analyse a few windows, add more only while the answer is still open.

Most tracks name their top genre after a handful of 3-s windows; a few (a quiet intro, then
drums; two genres neck and neck) need many. So windows are taken in a low-discrepancy order
(:func:`order`: every prefix is spread over the whole track) and, after each stage, the song's
top genre is tested against every other genre: the difference of their scores is a mean over
windows, so its standard error follows from how much the windows disagree. The track is settled
when the top genre leads every rival by ``z`` standard errors (with the finite-population
correction: analysing most of a track leaves little to learn); otherwise the next stage has
``growth`` times the windows, up to ``cap``. Pure arithmetic on scores: the engine does the I/O.

The settings were chosen with ``bench/bench_budget.py`` on half of the real-music corpus and
checked on the other half.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from tagger.analysis.taxonomy import GENRES

_PHI = (5 ** 0.5 - 1) / 2  # the golden ratio's fraction: the most evenly spreading step


def order(count: int, n: int | None = None) -> list[int]:
    """The first ``n`` (default: all) of ``count`` windows in the order they are analysed.

    A Kronecker sequence from the middle of the track (0.5, 0.12, 0.74, 0.35, ...): any prefix
    covers the track evenly, so a stage only adds windows and never moves earlier ones.
    """
    want = count if n is None else min(n, count)
    seen: set[int] = set()
    out: list[int] = []
    i = 0
    while len(out) < want and i < 8 * count + 8:
        w = int(((0.5 + i * _PHI) % 1.0) * count)
        i += 1
        if w not in seen:
            seen.add(w)
            out.append(w)
    for w in range(count):  # only for tiny counts the sequence missed; never over a long track
        if len(out) >= want:
            break
        if w not in seen:
            out.append(w)
    return out


@lru_cache(maxsize=8)
def _sources(tags: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """For each canonical genre this model can name, the raw tags its score is the max of."""
    index = {t: i for i, t in enumerate(tags)}
    found = (tuple(index[s] for s in g.sources if s in index) for g in GENRES)
    return tuple(src for src in found if src)


def lead(tags: tuple[str, ...], scores: npt.NDArray[np.float32], count: int) -> float:
    """How many standard errors the song's top genre leads its closest rival by (``inf`` when
    no window disagrees or every window is in). ``scores``: (windows so far, raw tags)."""
    n = len(scores)
    if n >= count:
        return float("inf")
    srcs = _sources(tags)
    mean = scores.mean(axis=0)
    # A genre's score is the max over its raw tags: the tag that is max for the song stands in.
    best = np.array([src[int(np.argmax(mean[list(src)]))] for src in srcs])
    song = mean[best]
    top = int(np.argmax(song))
    rivals = np.delete(np.arange(len(best)), top)
    diffs = scores[:, best[top], None] - scores[:, best[rivals]]  # (windows, rivals)
    margin = diffs.mean(axis=0)
    if n < 2:
        return 0.0
    se = diffs.std(axis=0, ddof=1) / np.sqrt(n) * np.sqrt(1.0 - n / count)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, margin / se, np.where(margin > 0, np.inf, 0.0))
    return float(t.min())


@dataclass(frozen=True)
class AdaptiveBudget:
    """Stage sizes and the stopping rule (see the module docstring)."""

    first: int = 6
    z: float = 1.0
    cap: int = 64
    growth: float = 1.5

    def settled(self, tags: tuple[str, ...], scores: npt.NDArray[np.float32],
                count: int) -> int | None:
        """The final window count if the windows so far settle the track, else None."""
        n = len(scores)
        if n >= min(count, self.cap) or lead(tags, scores, count) > self.z:
            return n
        return None

    def next_count(self, n: int, count: int) -> int:
        return min(count, self.cap, max(n + 1, round(n * self.growth)))

    def describe(self) -> str:
        return f"first {self.first}, x{self.growth:g}, z {self.z:g}, cap {self.cap}"

    @staticmethod
    def candidates() -> Sequence[AdaptiveBudget]:
        """Settings ``bench/bench_budget.py`` compares."""
        return [AdaptiveBudget(f, z, c, g) for f in (4, 6, 8) for g in (1.5, 2.0)
                for z in (0.5, 1.0, 1.5) for c in (32, 64, 96)]
