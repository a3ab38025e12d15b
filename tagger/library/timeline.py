"""What the model heard, window by window, for ``show --plot``: from the cache when it keeps the
audio's per-window scores, else by analysing the file (nothing is written)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from tagger.analysis.embedding import instances, unpack, unpack_timeline
from tagger.analysis.engine import Failure
from tagger.analysis.features import HOP, N_FRAMES, SAMPLE_RATE
from tagger.analysis.model.catalog import get_model, model_version
from tagger.analysis.model.trained import chooser_for, is_trained, trained_scores, version_of
from tagger.analysis.model.trained import load as load_model
from tagger.analysis.taxonomy import genre_scores
from tagger.cache import Cache
from tagger.errors import TaggerError
from tagger.formats.identity import trusted
from tagger.library.reuse import cached_row
from tagger.settings import Settings

WINDOW_SECONDS = N_FRAMES * HOP / SAMPLE_RATE


class NoTimeline(TaggerError):
    """The file cannot be analysed (the reason says why)."""


@dataclass(frozen=True)
class Timeline:
    times: list[float]  # seconds: the centre of each window (or group of windows)
    series: dict[str, list[float]]  # genre (your words) -> score per time, strongest first
    chosen: list[tuple[str, float]]  # the song's genres and their scores
    model: str  # version
    source: str  # "cache" or "analysed"
    unit: str  # "window" or "segment" (a trained model scores groups of windows)


def timeline(path: str, settings: Settings, cache: Cache, limit: int = 6,
             fresh: bool = False) -> Timeline:
    model = settings.model
    trained = load_model(model) if is_trained(model) else None
    base = trained.base if trained else model
    st = os.stat(path)
    _, audio_id = cached_row(cache, path, st, version_of(model))
    stored = (cache.features([str(audio_id)], model_version(base)).get(str(audio_id))
              if trusted(audio_id) else None)
    tags = get_model(base).tags
    found = None
    if (not fresh and stored is not None and stored.timeline
            and all(t in stored.raw_scores for t in tags)):
        try:
            found = (*unpack_timeline(stored.timeline), unpack(stored.data))
        except ValueError:
            found = None  # not ours to trust: analysed again
    if found is not None and stored is not None:
        starts, raw, feats = found
        song_raw, source = stored.raw_scores, "cache"
    else:
        from tagger.analysis.engine import Engine

        result = Engine(settings.engine_config()).predict(path)
        if isinstance(result, Failure):
            raise NoTimeline(f"{path}: {result.reason}")
        if result.timeline is None or result.features is None:
            raise NoTimeline(f"{path}: the analysis kept no window scores")
        starts, raw = unpack_timeline(result.timeline)
        feats, song_raw, source = unpack(result.features), result.raw, "analysed"
    centres = starts + WINDOW_SECONDS / 2
    sel = settings.selection()
    if trained is not None:  # the head scores each stored segment as a song of its own
        times = instances(centres[:, None].astype(np.float32), len(feats))[:, 0]
        per = [trained_scores(trained, feats[i:i + 1]) for i in range(len(feats))]
        song = trained_scores(trained, feats)
        unit = "segment"
    else:
        times = centres
        per = [genre_scores(tags, raw[i]) for i in range(len(raw))]
        song = genre_scores(tags, np.asarray([song_raw[t] for t in tags], np.float32))
        unit = "window"
    chosen = chooser_for(trained)(song, sel)
    mine = [sel.genres.scores(p) for p in per]
    overall = sel.genres.scores(song)
    names = [g for g, _ in chosen if g in overall]
    names += [g for g in sorted(overall, key=lambda g: -overall[g]) if g not in names]
    names = names[:max(limit, len(chosen))]
    return Timeline([round(float(t), 2) for t in times],
                    {g: [float(p.get(g, 0.0)) for p in mine] for g in names},
                    list(chosen), trained.version if trained else model_version(model), source, unit)


__all__ = ["NoTimeline", "Timeline", "timeline"]
