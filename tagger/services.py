"""The two services every front door uses, built from :class:`~tagger.settings.Settings` in one
place: a score source (the cache, then the engine: :mod:`tagger.library.scores`) and a tagger
(choose, decide, record the intent, write, record the outcome: :mod:`tagger.library.tagging`),
held together by a :class:`~tagger.library.pipeline.Scanner` for a scan or for the daemon's life.

``scan``, ``watch``, ``show --plot`` and the beets plugin build them here, so a setting reaches
each of them the same way, and so does the model learning switched to
(:func:`tagger.library.learned.resolve`: the ``model`` setting's own, unless learning replaced
it). (``train``/``evaluate`` build their source from the model's learning
config instead: a head always learns from features made with the fixed budget.)
"""

from __future__ import annotations

from tagger.analysis.engine import Analysis
from tagger.cache import Cache
from tagger.library.learned import resolve
from tagger.library.pipeline import Scanner, ScanOptions
from tagger.library.scores import ScoreSource
from tagger.settings import Settings


def score_source(settings: Settings, cache: Cache, engine: Analysis | None = None) -> ScoreSource:
    """Scores for paths under the settings' model, selection and budget: from the cache where
    the audio was analysed before, else from ``engine`` (loaded on first need when None)."""
    return ScoreSource(resolve(settings, cache).settings.engine_config(), cache, engine)


def scanner(settings: Settings, cache: Cache, engine: Analysis | None = None, *,
            roots: tuple[str, ...] | None = None, dry_run: bool = False,
            retry_failed: bool = False, retag_reverted: bool = False,
            learnt: bool = True) -> Scanner:
    """A score source and a tagger under ``settings`` (their roots unless ``roots``: a scan's
    own); the flags are the ``scan`` command's own, which no config file sets. ``learnt``:
    with the model learning switched to, if it did (False: the setting's own, the daemon's
    fallback while the learnt model's file cannot be had)."""
    if learnt:
        settings = resolve(settings, cache).settings
    options = ScanOptions(roots=settings.roots if roots is None else roots,
                          policy=settings.policy, dry_run=dry_run, tags=settings.tag_options(),
                          retry_failed=retry_failed, retag_reverted=retag_reverted,
                          album=settings.album)
    return Scanner(options, settings.engine_config(), cache, engine)
