"""The engine: files in, genre predictions out.

Files are decoded in parallel (``jobs`` threads, each waiting on a decoder child process) while
the model runs in the calling thread, so decoding overlaps inference. The windows of every track
go into one flat queue that the model drains in fixed-size batches: one call holds windows of
many tracks, and each track's scores are averaged (MIL) once all its windows are scored.
Results come back in input order; a file that fails yields a :class:`Failure`, never an
exception, and the rest carry on. A problem of the machine (no working ffmpeg, out of memory)
is raised as :class:`tagger.errors.EnvironmentProblem` instead: it is no file's fault.
"""

from __future__ import annotations

import errno
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger.analysis.config import EngineConfig
from tagger.analysis.embedding import instances, pack, pack_timeline, unpack
from tagger.analysis.extract import TrackWindows, extract_windows
from tagger.analysis.model.mil import mean_by_track
from tagger.analysis.model.runner import WindowScorer
from tagger.analysis.model.trained import (
    TrainedModel,
    chooser_for,
    is_trained,
    load,
    trained_scores,
)
from tagger.analysis.taxonomy import genre_scores
from tagger.errors import AudioError, Code, EnvironmentProblem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    path: str
    genres: list[tuple[str, float]]  # chosen, most confident first; empty = abstained
    genre_scores: dict[str, float]  # every canonical genre
    raw: dict[str, float]  # every raw model tag
    windows: int
    seconds: float
    model_version: str
    #: The base model's pooled features (:func:`tagger.analysis.embedding.pack`), kept so a
    #: trained model can learn from and re-decide this audio without decoding it again.
    features: bytes | None = None
    base_version: str | None = None
    #: The base model's raw scores window by window, with start times
    #: (:func:`tagger.analysis.embedding.pack_timeline`): what ``show --plot`` draws.
    timeline: bytes | None = None


@dataclass(frozen=True)
class Failure:
    path: str
    code: Code
    reason: str


Result = Prediction | Failure


@dataclass
class _Track:
    windows: TrackWindows
    scores: list[np.ndarray] = field(default_factory=list)
    scored: int = 0

    @property
    def done(self) -> bool:
        return self.scored == len(self.windows.windows)


class WindowQueue:
    """Tracks in input order, and their windows not yet scored (FIFO across tracks).

    ``batches`` cuts fixed-size model batches from the windows of as many tracks as it takes;
    ``finished`` hands tracks (and failures) back in input order once all their windows are
    scored. No track's windows are copied; a batch holds views into them.
    """

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self._order: deque[_Track | Failure] = deque()
        self._waiting: deque[tuple[_Track, np.ndarray]] = deque()
        self._queued = 0

    def add(self, item: TrackWindows | Failure) -> None:
        if isinstance(item, Failure):
            self._order.append(item)
            return
        track = _Track(item)
        self._order.append(track)
        self._waiting.append((track, item.windows))
        self._queued += len(item.windows)

    def batches(self, final: bool) -> Iterator[tuple[np.ndarray, list[tuple[_Track, int]]]]:
        """Full batches (and, when ``final``, the last partial one): the windows, and which
        track each run of them belongs to."""
        while self._queued >= self.batch or (final and self._queued):
            parts: list[np.ndarray] = []
            owners: list[tuple[_Track, int]] = []
            need = min(self.batch, self._queued)
            while need:
                track, wins = self._waiting[0]
                n = min(need, len(wins))
                parts.append(wins[:n])
                owners.append((track, n))
                if n == len(wins):
                    self._waiting.popleft()
                else:
                    self._waiting[0] = (track, wins[n:])
                need -= n
            self._queued -= sum(n for _, n in owners)
            yield np.concatenate(parts), owners

    @staticmethod
    def record(scores: np.ndarray, owners: list[tuple[_Track, int]]) -> None:
        pos = 0
        for track, n in owners:
            track.scores.append(scores[pos:pos + n])
            track.scored += n
            pos += n

    def finished(self) -> Iterator[_Track | Failure]:
        while self._order and (isinstance(self._order[0], Failure) or self._order[0].done):
            yield self._order.popleft()


class Engine:
    """Holds the loaded model; reuse one engine for many files."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        #: A trained head (``config.model`` is a model file), run on the base model's features.
        self.trained: TrainedModel | None = load(self.config.model) if is_trained(
            self.config.model) else None
        base = self.trained.base if self.trained else self.config.model
        self.scorer = WindowScorer(base, self.config.device, self.config.batch_size, features=True)

    @property
    def model_version(self) -> str:
        return self.trained.version if self.trained else self.scorer.version

    def _safe_extract(self, path: str) -> TrackWindows | Failure:
        """A file's windows or its :class:`Failure`; the machine's own problems are raised.

        A missing ffmpeg, exhausted memory or descriptors would fail every file alike: recorded
        per file (and cached), they would blame sound files for the machine's fault.
        """
        try:
            return extract_windows(path, self.config)
        except AudioError as e:
            return Failure(e.path, e.code, e.reason)
        except EnvironmentProblem:
            raise
        except MemoryError:
            raise EnvironmentProblem(f"out of memory while analysing {path}") from None
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN):
                raise EnvironmentProblem(f"{e.strerror} while analysing {path}") from None
            return self._internal(path, e)
        except Exception as e:
            return self._internal(path, e)

    @staticmethod
    def _internal(path: str, e: Exception) -> Failure:
        """A bug of ours: the traceback goes to the log, a plain line to the person."""
        log.debug("internal error on %s", path, exc_info=e)
        return Failure(path, "internal-error",
                       f"genre-tagger failed unexpectedly on this file ({type(e).__name__}); "
                       "please report it")

    def predict_paths(self, paths: Iterable[str | Path]) -> Iterator[Result]:
        """Predict every path, yielding results in input order as they complete.

        Raises :class:`tagger.errors.EnvironmentProblem` (no working decoder, out of memory):
        a machine's problem is no file's result.
        """
        # Enough decodes in flight to keep the model fed, few enough to bound memory.
        ahead = max(2 * self.config.jobs, 2)
        windows = WindowQueue(self.scorer.batch_size)
        inflight: deque[Future[TrackWindows | Failure]] = deque()
        todo = iter(paths)
        pool = ThreadPoolExecutor(self.config.jobs, thread_name_prefix="decode")
        try:
            while True:
                for path in todo:  # top up the decoders
                    inflight.append(pool.submit(self._safe_extract, str(path)))
                    if len(inflight) >= ahead:
                        break
                if not inflight:
                    break
                windows.add(inflight.popleft().result())
                for batch, owners in windows.batches(final=not inflight):
                    windows.record(self.scorer.score_with_features(batch), owners)
                for item in windows.finished():
                    yield item if isinstance(item, Failure) else self._prediction(item)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # stop soon after an error or close()

    def _prediction(self, track: _Track) -> Prediction:
        rows = np.concatenate(track.scores)
        tags = self.scorer.tags
        scores, feats = rows[:, :len(tags)], rows[:, len(tags):]
        song = mean_by_track(scores, [len(scores)])[0]
        # As stored (8-bit): a trained head sees the same numbers now, when it was trained, and
        # when it re-decides from the cache.
        stored = pack(instances(feats))
        bag = unpack(stored)
        genres = trained_scores(self.trained, bag) if self.trained else genre_scores(tags, song)
        chosen = chooser_for(self.trained)(genres, self.config.selection)
        return Prediction(
            path=track.windows.path,
            genres=chosen,
            genre_scores=genres,
            raw={t: float(s) for t, s in zip(tags, song)},
            windows=len(scores),
            seconds=track.windows.seconds,
            model_version=self.model_version,
            features=stored,
            base_version=self.scorer.version,
            timeline=pack_timeline(np.asarray(track.windows.starts, np.float32), scores)
            if len(track.windows.starts) == len(scores) else None,
        )

    def predict(self, path: str | Path) -> Result:
        """One file (convenience for callers that have just one)."""
        return next(iter(self.predict_paths([path])))
