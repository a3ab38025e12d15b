"""The score source: where every file's genre scores come from, for every front door.

``scan``, the daemon's batches and the beets plugin (:meth:`ScoreSource.scores`), ``train`` and
``evaluate`` (:meth:`ScoreSource.features`) and ``show --plot`` (:meth:`ScoreSource.timeline`)
all go through one cache-then-engine loop, cheapest first:

1. the file's own cached row (unchanged stat, or the same audio after a tag edit), or another
   path's with the same audio identity (a move, rename or copy): nothing is decoded;
2. the audio's stored window features (any front door analysed it, under any model on the same
   base): a trained head, or the shipped scores stored with them, decide; nothing is decoded;
3. the engine, in cross-track batches, loaded only when a file needs it; files with the same
   audio are analysed once.

Every result, scores or failure, is recorded in the cache, so a track one front door analysed is
never analysed again by another. The one model object (:class:`~tagger.analysis.model.resolved.Model`)
gives the version rows are kept under, the scores from stored features, and the choice.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from tagger.analysis.config import EngineConfig
from tagger.analysis.embedding import unpack, unpack_timeline
from tagger.analysis.engine import Analysis, Engine, Failure, Prediction
from tagger.analysis.model.resolved import Model, open_model
from tagger.analysis.model.trained import Float32Array
from tagger.cache import Cache, TrackRow
from tagger.cache.store import StoredFeatures
from tagger.formats.identity import audio_identity, trusted
from tagger.stopping import Flag, Stop

ANALYSED = ("done", "abstained")


def cached_row(cache: Cache, path: str, st: os.stat_result, version: str,
               read_as: str | None = None) -> tuple[TrackRow | None, str | None]:
    """``(row with usable scores, audio id)``; the row is None when the file must be analysed.

    The row is the file's own (unchanged stat, or same audio after a tag edit) or, for audio
    cached under another path, preferably one whose file has vanished: then the file was moved.
    The audio id is only computed when the stat does not settle it (it reads the whole file).
    """
    row = cache.get(path)
    if (row and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
            and row.model_version == version and row.status in ANALYSED):
        return row, row.audio_id
    try:
        audio_id = audio_identity(read_as or path)
    except OSError:
        return None, None
    if not trusted(audio_id):
        return None, audio_id  # an identity that says nothing about the audio is never reused
    if row and row.audio_id == audio_id and row.model_version == version and (
            row.status in ANALYSED or (row.status == "deleted" and row.genre_scores)):
        return row, audio_id  # a tag edit, or a file that went away and came back
    others = [r for r in cache.by_audio_id(audio_id, version) if r.path != path]
    others.sort(key=lambda r: os.path.exists(r.path))  # vanished paths (moves) first
    return (others[0] if others else None), audio_id


def failure_key() -> str:
    """What an analysis failure depends on besides the file: genre-tagger's version and the
    decoder's. A failure recorded under another key is retried (a newer ffmpeg may read it)."""
    from tagger import __version__
    from tagger.analysis.decode import decoder_version

    return f"analysis|{__version__}|{decoder_version()}"


def record_prediction(cache: Cache, result: Prediction | Failure, st: os.stat_result,
                      audio_id: str | None, version: str, analysed: bool = True) -> None:
    """Store an engine result for ``result.path`` (scores, or the failure and its reason), and
    the audio's features (by identity, so its copies and moves share them). ``analysed``:
    the file was decoded and the network ran (False: re-scored from stored features)."""
    if isinstance(result, Failure):
        cache.upsert(result.path, size=st.st_size, mtime_ns=st.st_mtime_ns, audio_id=audio_id,
                     status="failed", error_code=result.code, error_reason=result.reason,
                     model_version=version, decision_key=failure_key())
        return
    cache.upsert(result.path, size=st.st_size, mtime_ns=st.st_mtime_ns, audio_id=audio_id,
                 model_version=result.model_version, raw_scores=result.raw,
                 genre_scores=result.genre_scores, status="done", error_code=None,
                 error_reason=None, analysed_at=time.time())
    if analysed:
        cache.count_analysis(result.path)
    if result.features and result.base_version and trusted(audio_id):
        cache.put_features(str(audio_id), result.base_version,
                           StoredFeatures(result.windows, result.features, result.raw,
                                          result.timeline))


def copy_scores(cache: Cache, path: str, src: TrackRow, st: os.stat_result, audio_id: str | None) -> None:
    """Give ``path`` the cached analysis ``src`` (same audio under another path)."""
    cache.upsert(path, size=st.st_size, mtime_ns=st.st_mtime_ns, audio_id=audio_id,
                 model_version=src.model_version, raw_scores=src.raw_scores,
                 genre_scores=src.genre_scores, status=src.status, analysed_at=src.analysed_at,
                 error_code=None, error_reason=None)


#: Where a file's scores came from: its own or another path's row (``reused``; ``moved`` when
#: that path is gone), its audio's stored features (``rescored``), the engine (``analysed``),
#: or nowhere (``failed``).
Source = Literal["reused", "moved", "rescored", "analysed", "failed"]


@dataclass(frozen=True)
class Scored:
    """A file's scores (its cache row) or why it has none."""

    path: str
    stat: os.stat_result  # as found: a write checks the file still matches it
    result: TrackRow | Failure
    action: Source


@dataclass(frozen=True)
class Features:
    """Labelled files' stored features for training: path -> features, the files that could
    not be analysed (path, reason), and how many came from the cache."""

    found: dict[str, StoredFeatures] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    from_cache: int = 0


@dataclass(frozen=True)
class WindowScores:
    """One analysis of a file, window by window (``show --plot``): the windows' start times and
    raw scores, the track's bag of features, the song's raw scores, and where it came from."""

    starts: Float32Array
    raw: Float32Array
    bag: Float32Array
    song_raw: dict[str, float]
    source: Literal["cache", "analysed"]


class ScoreSource:
    """The one cache-then-engine loop (see the module's docstring), for one model and cache.

    ``engine``: one already loaded (the daemon's, kept between batches), or the same analysis on
    a Ray cluster; else a local one, loaded when a file needs analysing. With an engine, its
    model is the source's (not the file's current one: versions and scores must agree).
    """

    def __init__(self, config: EngineConfig, cache: Cache, engine: Analysis | None = None) -> None:
        #: The engine's model when there is one, else the one ``config`` names.
        self.model: Model = engine.model if engine is not None else open_model(config.model)
        self.config = config
        self.cache = cache
        self._engine = engine

    @property
    def engine(self) -> Analysis:
        if self._engine is None:
            self._engine = Engine(self.config, self.model)
        return self._engine

    @property
    def loaded_engine(self) -> Analysis | None:
        """The engine if this source needed (and so loaded) one: the daemon keeps it for the
        next batch."""
        return self._engine

    def scores(self, items: Iterable[tuple[str, os.stat_result]],
               stop: Stop | None = None) -> Iterator[Scored]:
        """Every file's scores, cheapest first. Every file comes out, with its row or its
        failure; the cache holds both."""
        stop = stop or Flag()
        version = self.model.version
        todo: dict[str, tuple[os.stat_result, str | None]] = {}
        for path, st in items:
            if stop.is_set():
                return
            found, audio_id = cached_row(self.cache, path, st, version)
            if found is None:
                todo[path] = (st, audio_id)
            elif found.path == path:  # its own row: a tag edit, or a new policy or selection
                self.cache.upsert(path, size=st.st_size, mtime_ns=st.st_mtime_ns, audio_id=audio_id)
                yield Scored(path, st, found, "reused")
            elif not os.path.exists(found.path):
                self.cache.move(found.path, path, size=st.st_size, mtime_ns=st.st_mtime_ns)
                yield Scored(path, st, self.cache.get(path) or found, "moved")
            else:
                copy_scores(self.cache, path, found, st, audio_id)
                yield Scored(path, st, self.cache.get(path) or found, "reused")
        if todo and not stop.is_set():
            yield from self._rescored(todo)
        if todo and not stop.is_set():
            yield from self._analysed(todo, stop)

    def _stored(self, audio_ids: Iterable[str | None]) -> dict[str, StoredFeatures]:
        """The stored features of these audios under the model's base (untrusted ids left out)."""
        ids = [str(a) for a in audio_ids if trusted(a)]
        return self.cache.features(ids, self.model.base_version) if ids else {}

    def _rescored(self, todo: dict[str, tuple[os.stat_result, str | None]]) -> Iterator[Scored]:
        """Files whose audio's features are stored (any front door analysed it, under any
        model): decided from them, nothing decoded. A trained head runs on the stored bag; the
        shipped model's own scores are stored with it (so switching back is free too).
        Taken out of ``todo``."""
        stored = self._stored(a for _, a in todo.values())
        for path, (st, audio_id) in list(todo.items()):
            found = stored.get(str(audio_id))
            if found is None:
                continue
            genres = self.model.scores(_bag(found) if self.model.trained else None,
                                       found.raw_scores)
            if genres is None:
                continue  # not an analysis this model can answer from: analysed again
            result = Prediction(path, genres, found.raw_scores, found.windows, 0.0,
                                self.model.version)
            record_prediction(self.cache, result, st, audio_id, self.model.version, analysed=False)
            del todo[path]
            yield Scored(path, st, self.cache.get(path) or _never(path), "rescored")

    def _analysed(self, todo: dict[str, tuple[os.stat_result, str | None]],
                  stop: Stop) -> Iterator[Scored]:
        # Files with the same audio (a track on an album and on a compilation) are analysed once;
        # if that one fails (its container may be the damaged part), its copies are analysed too.
        copies: dict[str, list[str]] = {}  # the path analysed -> paths with the same audio
        first_with: dict[str, str] = {}  # audio id -> the path analysed for it
        for path, (_, audio_id) in todo.items():
            if trusted(audio_id) and audio_id in first_with:
                copies[first_with[str(audio_id)]].append(path)
                continue
            copies[path] = []
            if trusted(audio_id):
                first_with[str(audio_id)] = path
        leaders = list(copies)
        retry: list[str] = []  # filled while the leaders run

        def feed(paths: list[str]) -> Iterator[str]:
            for path in paths:
                if stop.is_set():
                    return  # in-flight files finish; the rest wait for the next scan
                yield path

        for paths in (leaders, retry):
            if not paths:
                continue
            for result in self.engine.predict_paths(feed(paths)):
                st, audio_id = todo[result.path]
                record_prediction(self.cache, result, st, audio_id, self.model.version)
                if isinstance(result, Failure):
                    yield Scored(result.path, st, result, "failed")
                    retry.extend(copies.get(result.path, []))
                    continue
                row = self.cache.get(result.path)
                assert row is not None
                yield Scored(result.path, st, row, "analysed")
                for dup in copies.get(result.path, []):
                    copy_scores(self.cache, dup, row, todo[dup][0], audio_id)
                    yield Scored(dup, todo[dup][0], self.cache.get(dup) or row, "reused")

    def features(self, paths: list[str], say: Callable[[str], None]) -> Features:
        """Each file's stored features under the model's base (by audio identity), else analysed
        now and stored: what a head learns from (``train``, ``evaluate``)."""
        ids: dict[str, str | None] = {}
        for path in paths:
            try:
                st = os.stat(path)
                row = self.cache.get(path)  # unchanged since the cache saw it: not hashed again
                known = row is not None and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
                ids[path] = row.audio_id if known and row and row.audio_id else audio_identity(path)
            except OSError:
                ids[path] = None
        stored = self._stored(ids.values())
        found = {p: stored[str(a)] for p, a in ids.items() if trusted(a) and str(a) in stored}
        todo = [p for p in paths if p not in found]
        say(f"features: {len(found)} of {len(paths)} files from the cache, {len(todo)} to analyse")
        failures: list[tuple[str, str]] = []
        for n, r in enumerate(self.engine.predict_paths(todo) if todo else (), 1):
            if isinstance(r, Failure):
                failures.append((r.path, r.reason))
            else:
                assert r.features is not None
                sf = StoredFeatures(r.windows, r.features, r.raw, r.timeline)
                found[r.path] = sf
                if trusted(ids[r.path]):
                    self.cache.put_features(str(ids[r.path]), self.model.base_version, sf)
            if n % 25 == 0 or n == len(todo):
                say(f"  analysed {n}/{len(todo)}")
        return Features(found, failures, len(paths) - len(todo))

    def timeline(self, path: str, fresh: bool = False, analyse: bool = True,
                 read_as: str | None = None) -> WindowScores | Failure:
        """The file's analysis window by window: the audio's stored one when it kept its windows'
        scores (and ``fresh`` is not asked), else analysed now (nothing is written; not with
        ``analyse=False``: the page never loads the model to draw). ``read_as``: the name the
        file is read by when not ``path`` (the page's ``/proc/self/fd/N`` of the file it
        checked under the roots)."""
        st = os.stat(read_as or path)
        _, audio_id = cached_row(self.cache, path, st, self.model.version, read_as)
        stored = self._stored([audio_id]).get(str(audio_id))
        if (not fresh and stored is not None and stored.timeline
                and all(t in stored.raw_scores for t in self.model.tags)):
            try:
                starts, raw = unpack_timeline(stored.timeline)
                return WindowScores(starts, raw, unpack(stored.data), stored.raw_scores, "cache")
            except ValueError:
                pass  # not ours to trust: analysed again
        if not analyse:
            return Failure(path, "not-kept", "the cache keeps no window scores for this audio "
                                             "under this model ('show --plot' analyses it)")
        result = next(iter(self.engine.predict_paths([path])))
        if isinstance(result, Failure):
            return result
        if result.timeline is None or result.features is None:
            return Failure(path, "internal-error", "the analysis kept no window scores")
        starts, raw = unpack_timeline(result.timeline)
        return WindowScores(starts, raw, unpack(result.features), result.raw, "analysed")


def _bag(found: StoredFeatures) -> Float32Array | None:
    """A stored bag of window features, or None when it is not ours to trust."""
    try:
        return unpack(found.data)
    except ValueError:
        return None


def _never(path: str) -> TrackRow:
    raise AssertionError(f"{path}: recorded, then not found in the cache")
