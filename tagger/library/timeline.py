"""What the model heard, window by window, for ``show --plot``: from the cache when it keeps the
audio's per-window scores, else by analysing the file (nothing is written)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagger.analysis.embedding import instances
from tagger.analysis.engine import Failure
from tagger.analysis.features import HOP, N_FRAMES, SAMPLE_RATE
from tagger.analysis.model.trained import trained_scores
from tagger.analysis.taxonomy import genre_scores
from tagger.errors import NoTimeline
from tagger.library.scores import ScoreSource

WINDOW_SECONDS = N_FRAMES * HOP / SAMPLE_RATE


@dataclass(frozen=True)
class Timeline:
    times: list[float]  # seconds: the centre of each window (or group of windows)
    series: dict[str, list[float]]  # genre (your words) -> score per time, strongest first
    chosen: list[tuple[str, float]]  # the song's genres and their scores
    model: str  # version
    source: str  # "cache" or "analysed"
    unit: str  # "window" or "segment" (a trained model scores groups of windows)


def timeline(path: str, source: ScoreSource, limit: int = 6, fresh: bool = False,
             analyse: bool = True, read_as: str | None = None) -> Timeline:
    """The file's scores window by window under ``source``'s model, and the genres its song
    scores choose (at most ``limit`` genres drawn, the chosen ones first); ``analyse=False``:
    only from the cache (else :class:`NoTimeline`). ``read_as``: see ScoreSource.timeline."""
    model = source.model
    got = source.timeline(path, fresh, analyse, read_as)
    if isinstance(got, Failure):
        raise NoTimeline(f"{path}: {got.reason}")
    centres = got.starts + WINDOW_SECONDS / 2
    sel = source.config.selection
    if model.trained is not None:  # the head scores each stored segment as a song of its own
        times = instances(centres[:, None].astype(np.float32), len(got.bag))[:, 0]
        per = [trained_scores(model.trained, got.bag[i:i + 1]) for i in range(len(got.bag))]
        song = trained_scores(model.trained, got.bag)
        unit = "segment"
    else:
        tags = model.tags
        times = centres
        per = [genre_scores(tags, got.raw[i]) for i in range(len(got.raw))]
        song = genre_scores(tags, np.asarray([got.song_raw[t] for t in tags], np.float32))
        unit = "window"
    chosen = model.choose(song, sel)
    mine = [sel.genres.scores(p) for p in per]
    overall = sel.genres.scores(song)
    names = [g for g, _ in chosen if g in overall]
    names += [g for g in sorted(overall, key=lambda g: -overall[g]) if g not in names]
    names = names[:max(limit, len(chosen))]
    return Timeline([round(float(t), 2) for t in times],
                    {g: [float(p.get(g, 0.0)) for p in mine] for g in names},
                    list(chosen), model.version, got.source, unit)


__all__ = ["NoTimeline", "Timeline", "timeline"]
