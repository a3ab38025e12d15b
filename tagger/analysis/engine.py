"""The engine: files in, genre predictions out.

Files are decoded in parallel (``jobs`` threads, each waiting on a decoder child process) while
the model runs in the calling thread, so decoding overlaps inference. The windows of every track
go into one flat queue that the model drains in fixed-size batches: one call holds windows of
many tracks, and each track's scores are averaged (MIL) once all its windows are scored. With
the adaptive budget a track whose top genre is still open when its windows are scored goes back
to the decoders for more (:mod:`tagger.analysis.budget`); the others carry on meanwhile.
Results come back in input order; a file that fails yields a :class:`Failure`, never an
exception, and the rest carry on. A problem of the machine (no working ffmpeg, out of memory)
is raised as :class:`tagger.errors.EnvironmentProblem` instead: it is no file's fault.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from tagger.analysis.budget import AdaptiveBudget
from tagger.analysis.config import EngineConfig, auto_jobs
from tagger.analysis.decode import SegmentReader
from tagger.analysis.embedding import instances, pack, pack_timeline, unpack
from tagger.analysis.extract import TrackWindows, extract_windows, more_windows
from tagger.analysis.model.mil import mean_by_track
from tagger.analysis.model.resolved import Model, open_model
from tagger.analysis.model.runner import window_scorer
from tagger.errors import MACHINE_ERRNOS, AudioError, Code, EnvironmentProblem, ModelFileError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """A file's scores. Which genres it gets is chosen where they are used (``Model.choose``:
    scan's and the daemon's writes, the plugin, ``predict``'s output), once, by the model."""

    path: str
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


class Analysis(Protocol):
    """What a scan needs of an engine: this machine's :class:`Engine`, or the same on a Ray
    cluster (:class:`tagger.analysis.remote.RayEngine`)."""

    #: The model it runs (its version is what the cache records).
    model: Model

    def predict_paths(self, paths: Iterable[str | Path]) -> Iterator[Result]: ...


@dataclass
class _Track:
    windows: TrackWindows  # the first stage's (all of them without the adaptive budget)
    scores: list[np.ndarray] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)
    queued: int = 0  # windows handed to the queue so far
    scored: int = 0
    #: No more windows will come: the budget is spent, or the adaptive rule settled it.
    final: bool = False
    pending: bool = False  # its next stage is being decoded

    @property
    def idle(self) -> bool:
        """Every window handed in is scored (the adaptive rule may look at it now)."""
        return self.scored == self.queued

    @property
    def done(self) -> bool:
        return self.final and self.idle


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

    def add(self, item: TrackWindows | Failure, final: bool = True) -> _Track | None:
        if isinstance(item, Failure):
            self._order.append(item)
            return None
        track = _Track(item, final=final)
        self._order.append(track)
        self.extend(track, item)
        return track

    def extend(self, track: _Track, more: TrackWindows) -> None:
        """More windows of a track already in the queue (the adaptive budget's next stage)."""
        track.starts.extend(more.starts)
        track.queued += len(more.windows)
        if len(more.windows):
            self._waiting.append((track, more.windows))
            self._queued += len(more.windows)

    def open(self) -> Iterator[_Track]:
        """Tracks whose scored windows leave the adaptive rule something to decide."""
        for item in self._order:
            if isinstance(item, _Track) and not item.final and not item.pending and item.idle:
                yield item

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


def _raise_if_machine(path: str, e: Exception) -> None:
    """Raise a problem of the machine (no decoder, out of memory or descriptors) as such: it
    would fail every file alike, and must never be recorded against this one."""
    if isinstance(e, EnvironmentProblem):
        raise e
    if isinstance(e, MemoryError):
        raise EnvironmentProblem(f"out of memory while analysing {path}") from None
    if isinstance(e, OSError) and e.errno in MACHINE_ERRNOS:
        raise EnvironmentProblem(f"{e.strerror} while analysing {path}") from None


#: What the decoders are doing: a file's first windows, or the next stage of an open track.
_Job = Future[TrackWindows | Failure] | Future[tuple["_Track", TrackWindows | None]]


class Engine:
    """Holds the loaded model; reuse one engine for many files."""

    def __init__(self, config: EngineConfig | None = None, model: Model | None = None) -> None:
        self.config = config or EngineConfig()
        #: The model (a trained head runs on its base's features, with a fixed budget): the one
        #: given (a score source's, read once: a model file rewritten since is not mixed in), else
        #: the one the config names.
        self.model: Model = model or open_model(self.config.model)
        self.config = self.model.config(self.config)
        base = self.model.base
        #: Long-lived decoder children for the windows' seeks, shared by the decoding threads.
        self.reader = SegmentReader()
        if self.config.budget is not None:
            self.reader.warm(min(self.config.jobs or 2, 2))
        self.scorer = window_scorer(base, self.config.device, self.config.batch_size, features=True,
                                    precision=self.config.precision)
        #: Files decoded at once (the config's, else chosen for where the model runs).
        self.jobs = self.config.jobs or auto_jobs(self.scorer.on_gpu)
        # The decoders' one matrix product (the mel filterbank: 0.1 ms a window on one core) is
        # far too small for BLAS's own threads, which only spin beside it: measured 34 ms of CPU
        # per file with them, 5 without; on a 16-core GPU machine 16 decoding threads decoded
        # 3,660 tracks/min with one BLAS thread, 2,055 without. BLAS's thread count belongs to
        # the process, so it stays at one from here on: the models run on OpenVINO's, XLA's or
        # TensorFlow's own threads, and nothing else genre-tagger runs is a large product.
        threadpool_limits(limits=1, user_api="blas")

    def _safe_extract(self, path: str) -> TrackWindows | Failure:
        """A file's windows or its :class:`Failure`; the machine's own problems are raised.

        A missing ffmpeg, exhausted memory or descriptors would fail every file alike: recorded
        per file (and cached), they would blame sound files for the machine's fault.
        """
        try:
            return extract_windows(path, self.config, self.reader)
        except AudioError as e:
            return Failure(e.path, e.code, e.reason)
        except Exception as e:
            _raise_if_machine(path, e)
            return self._internal(path, e)

    @staticmethod
    def _internal(path: str, e: Exception) -> Failure:
        """A bug of ours: the traceback goes to the log, a plain line to the person."""
        log.debug("internal error on %s", path, exc_info=e)
        return Failure(path, "internal-error",
                       f"genre-tagger failed unexpectedly on this file ({type(e).__name__}); "
                       "please report it")

    def _safe_more(self, track: _Track, n: int) -> tuple[_Track, TrackWindows | None]:
        """The next stage's windows of an open track; None (decide with what it has) when they
        cannot be had: its first windows were sound, so the file is not failed for it. The
        machine's own problems are raised, as for a first stage."""
        path = track.windows.path
        try:
            return track, more_windows(track.windows, n, self.config, self.reader)
        except Exception as e:  # an AudioError (changed under us) or a bug: keep what we have
            _raise_if_machine(path, e)
            log.debug("no more windows of %s", path, exc_info=e)
        return track, None

    def predict_paths(self, paths: Iterable[str | Path]) -> Iterator[Result]:
        """Predict every path, yielding results in input order as they complete.

        Raises :class:`tagger.errors.EnvironmentProblem` (no working decoder, out of memory):
        a machine's problem is no file's result.
        """
        # Enough decodes in flight to keep the model fed, few enough to bound memory.
        ahead = max(2 * self.jobs, 2)
        rule = self.config.budget if isinstance(self.config.budget, AdaptiveBudget) else None
        windows = WindowQueue(self.scorer.batch_size)
        inflight: deque[_Job] = deque()
        todo = iter(paths)
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="decode")
        try:
            while True:
                # Top up the decoders, counting the stages of open tracks: a library's worth of
                # tracks must never wait in memory for their next stage.
                while len(inflight) < ahead and (path := next(todo, None)) is not None:
                    inflight.append(pool.submit(self._safe_extract, str(path)))
                if not inflight:
                    break
                got = inflight.popleft().result()
                if isinstance(got, tuple):
                    track, more = got
                    track.pending = False
                    if more is None or not len(more.windows):
                        track.final = True
                    else:
                        track.windows = replace(track.windows, picks=more.picks)
                        windows.extend(track, more)
                else:
                    windows.add(got, final=rule is None or isinstance(got, Failure)
                                or not got.grid)
                for batch, owners in windows.batches(final=not inflight):
                    windows.record(self.scorer.score_with_features(batch), owners)
                if rule is not None:
                    for track in list(windows.open()):
                        self._stage(rule, track, pool, inflight)
                for item in windows.finished():
                    yield item if isinstance(item, Failure) else self._prediction(item)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # stop soon after an error or close()

    def _stage(self, rule: AdaptiveBudget, track: _Track, pool: ThreadPoolExecutor,
               inflight: deque[Any]) -> None:
        """Settle an idle track, or send it back to the decoders for its next stage."""
        scores = np.concatenate(track.scores)[:, :len(self.scorer.tags)]
        if rule.settled(self.scorer.tags, scores, track.windows.count) is not None:
            track.final = True
            return
        n = rule.next_count(len(track.windows.picks), track.windows.count)
        if n <= len(track.windows.picks):
            track.final = True
            return
        track.pending = True  # not looked at again until its next windows are in
        inflight.append(pool.submit(self._safe_more, track, n))

    def _prediction(self, track: _Track) -> Prediction:
        rows = np.concatenate(track.scores)
        # In time order: stages add windows between earlier ones, and the features' instances
        # and the timeline are read in time.
        in_time = np.argsort(np.asarray(track.starts), kind="stable")
        if len(in_time) == len(rows):
            rows = rows[in_time]
        starts = np.asarray(track.starts, np.float32)[in_time]
        tags = self.scorer.tags
        scores, feats = rows[:, :len(tags)], rows[:, len(tags):]
        song = mean_by_track(scores, [len(scores)])[0]
        # As stored (8-bit): a trained head sees the same numbers now, when it was trained, and
        # when it re-decides from the cache.
        stored = pack(instances(feats))
        bag = unpack(stored)
        raw = {t: float(s) for t, s in zip(tags, song)}
        genres = self.model.scores(bag, raw)
        if genres is None:  # its own base's features: only a model file at odds with itself
            raise ModelFileError(f"{self.model.name}: the model cannot score the features of "
                                 f"its own base network ({self.model.base}); train it again")
        return Prediction(
            path=track.windows.path,
            genre_scores=genres,
            raw=raw,
            windows=len(scores),
            seconds=track.windows.seconds,
            model_version=self.model.version,
            features=stored,
            base_version=self.scorer.version,
            timeline=pack_timeline(starts, scores) if len(starts) == len(scores) else None,
        )

    def close(self) -> None:
        """End the decoder children now (they also end with this process)."""
        self.reader.close()

    def predict(self, path: str | Path) -> Result:
        """One file (convenience for callers that have just one)."""
        return next(iter(self.predict_paths([path])))
