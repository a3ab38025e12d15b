"""What the page shows, computed (pure): the timeline drawn as SVG geometry, the windows that
decided, the genres a person types parsed, the pager. No I/O here; :mod:`tagger.web.app` reads
the cache and the files and hands the pieces in."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from tagger.library.timeline import WINDOW_SECONDS, Timeline

#: Colours of the drawn genres, chosen ones first (Okabe-Ito: told apart by colour-blind eyes).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
#: The most genres a person may give one file, and the longest name: a form is not a dump.
MAX_GENRES = 12
MAX_NAME = 80


@dataclass(frozen=True)
class Line:
    genre: str
    colour: str
    points: str  # SVG polyline points
    chosen: bool
    score: float  # the song's score, or the highest window's when not chosen


@dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    duration: float
    lines: list[Line]
    #: (seconds, label) of the windows that decided: the chosen genre's strongest windows.
    decisive: list[tuple[float, str]]
    ticks: list[tuple[float, str]]  # x position and label of each time tick
    unit: str


def clock(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 60}:{s % 60:02d}"


def drawing(t: Timeline, width: int = 760, height: int = 180, decisive: int = 3) -> Drawing:
    """``t`` as lines over time (x: seconds, y: score 0-1) and the ``decisive`` windows where
    its first chosen genre scored highest: where to listen for why it was chosen."""
    duration = max((t.times[-1] if t.times else 0.0) + WINDOW_SECONDS / 2, 1.0)
    chosen = dict(t.chosen)
    lines = []
    for i, (genre, series) in enumerate(t.series.items()):
        pts = " ".join(f"{x * width / duration:.1f},{(1 - min(max(y, 0.0), 1.0)) * height:.1f}"
                       for x, y in zip(t.times, series))
        lines.append(Line(genre, PALETTE[i % len(PALETTE)], pts, genre in chosen,
                          chosen.get(genre, max(series, default=0.0))))
    marks: list[tuple[float, str]] = []
    if t.chosen and t.chosen[0][0] in t.series:
        series = t.series[t.chosen[0][0]]
        best = sorted(range(len(series)), key=lambda i: -series[i])[:decisive]
        for i in sorted(best):
            start = max(t.times[i] - WINDOW_SECONDS / 2, 0.0)
            marks.append((round(start, 2), clock(start)))
    step = next((s for s in (10, 30, 60, 120, 300, 600, 1800) if duration / s <= 10),
                1800 * math.ceil(duration / 18_000))  # a long mix or an audiobook: half hours
    ticks = [(x * width / duration, clock(x)) for x in range(0, int(duration) + 1, step)]
    return Drawing(width, height, duration, lines, marks, ticks, t.unit)


def parse_seen(text: str) -> list[str]:
    """The genres the page showed a file carry (its hidden ``seen-N`` field: JSON, exactly as
    read); ValueError if it is not a list of strings."""
    got = json.loads(text)
    if not isinstance(got, list) or not all(isinstance(g, str) for g in got):
        raise ValueError("not a list of genres")
    return got


def parse_genres(text: str) -> list[str]:
    """A person's genres as typed: separated by ';' or new lines (a genre may hold a comma:
    "Folk, World, & Country"), trimmed, each once (case aside), none empty. ValueError says
    what is wrong, in words."""
    out: list[str] = []
    seen: set[str] = set()
    for part in text.replace("\r", "\n").replace("\n", ";").split(";"):
        name = part.strip()
        if not name:
            continue
        if not name.isprintable():
            raise ValueError(f"{name!r} holds characters that are not printable")
        if len(name) > MAX_NAME:
            raise ValueError(f"a genre of {len(name)} characters is longer than {MAX_NAME}")
        if name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    if len(out) > MAX_GENRES:
        raise ValueError(f"{len(out)} genres are more than {MAX_GENRES} for one file")
    return out


@dataclass(frozen=True)
class Pager:
    offset: int
    limit: int
    total: int

    @property
    def first(self) -> int:
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.limit, self.total)

    @property
    def previous(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset > 0 else None

    @property
    def next(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None


__all__ = ["MAX_GENRES", "Drawing", "Line", "Pager", "clock", "drawing", "parse_genres",
           "parse_seen"]
