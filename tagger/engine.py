"""The engine: files in, genre predictions out.

Files are decoded in parallel (``jobs`` threads, each waiting on a decoder child process) while
the model runs in the calling thread, so decoding overlaps inference. The windows of every track
go into one flat queue that the model drains in fixed-size batches: one call holds windows of
many tracks, and each track's scores are averaged (MIL) once all its windows are scored.
Results come back in input order; a file that fails yields a :class:`Failure`, never an
exception, and the rest carry on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger.config import EngineConfig
from tagger.errors import AudioError
from tagger.extract import TrackWindows, extract_windows
from tagger.model.mil import mean_by_track
from tagger.model.runner import WindowScorer
from tagger.taxonomy import choose, genre_scores


@dataclass(frozen=True)
class Prediction:
    path: str
    genres: list[tuple[str, float]]  # chosen, most confident first; empty = abstained
    genre_scores: dict[str, float]  # every canonical genre
    raw: dict[str, float]  # every raw model tag
    windows: int
    seconds: float
    model_version: str

    @property
    def ok(self) -> bool:
        return True


@dataclass(frozen=True)
class Failure:
    path: str
    code: str
    reason: str

    @property
    def ok(self) -> bool:
        return False


Result = Prediction | Failure


@dataclass
class _Track:
    windows: TrackWindows
    scores: list[np.ndarray] = field(default_factory=list)
    scored: int = 0


class Engine:
    """Holds the loaded model; reuse one engine for many files."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.scorer = WindowScorer(self.config.model, self.config.device, self.config.batch_size)

    @property
    def model_version(self) -> str:
        return self.scorer.version

    def _safe_extract(self, path: str) -> TrackWindows | Failure:
        try:
            return extract_windows(path, self.config)
        except AudioError as e:
            return Failure(e.path, e.code, e.reason)
        except Exception as e:
            return Failure(path, "internal-error", f"{type(e).__name__}: {e}")

    def predict_paths(self, paths: Iterable[str | Path],
                      on_result: Callable[[Result], None] | None = None) -> Iterator[Result]:
        """Predict every path, yielding results in input order as they complete."""
        batch = self.scorer.batch_size
        # Enough decodes in flight to keep the model fed, few enough to bound memory.
        ahead = max(2 * self.config.jobs, 2)
        todo = iter(str(p) for p in paths)
        inflight: deque[Future[TrackWindows | Failure]] = deque()
        order: deque[_Track | Failure] = deque()
        queue: list[tuple[_Track, np.ndarray]] = []  # windows not yet scored, FIFO
        queued = 0

        def drain(final: bool) -> None:
            nonlocal queue, queued
            while queued >= batch or (final and queued):
                take, need = [], min(batch, queued)
                while need:
                    track, wins = queue[0]
                    n = min(need, len(wins))
                    take.append((track, wins[:n]))
                    if n == len(wins):
                        queue.pop(0)
                    else:
                        queue[0] = (track, wins[n:])
                    need -= n
                scores = self.scorer.score(np.concatenate([w for _, w in take]))
                pos = 0
                for track, wins in take:
                    track.scores.append(scores[pos:pos + len(wins)])
                    track.scored += len(wins)
                    pos += len(wins)
                queued -= pos

        def finished() -> Iterator[Result]:
            while order and (isinstance(order[0], Failure)
                             or order[0].scored == len(order[0].windows.windows)):
                item = order.popleft()
                result = item if isinstance(item, Failure) else self._prediction(item)
                if on_result:
                    on_result(result)
                yield result

        with ThreadPoolExecutor(self.config.jobs, thread_name_prefix="decode") as pool:
            for path in todo:
                inflight.append(pool.submit(self._safe_extract, path))
                if len(inflight) < ahead:
                    continue
                self._accept(inflight.popleft().result(), order, queue)
                queued = sum(len(w) for _, w in queue)
                drain(final=False)
                yield from finished()
            while inflight:
                self._accept(inflight.popleft().result(), order, queue)
                queued = sum(len(w) for _, w in queue)
                drain(final=not inflight)
                yield from finished()
            drain(final=True)
            yield from finished()

    @staticmethod
    def _accept(item: TrackWindows | Failure, order: deque[_Track | Failure],
                queue: list[tuple[_Track, np.ndarray]]) -> None:
        if isinstance(item, Failure):
            order.append(item)
            return
        track = _Track(item)
        order.append(track)
        queue.append((track, item.windows))

    def _prediction(self, track: _Track) -> Prediction:
        scores = np.concatenate(track.scores)
        song = mean_by_track(scores, [len(scores)])[0]
        tags = self.scorer.tags
        genres = genre_scores(tags, song)
        return Prediction(
            path=track.windows.path,
            genres=choose(genres, self.config.selection),
            genre_scores=genres,
            raw={t: float(s) for t, s in zip(tags, song)},
            windows=len(scores),
            seconds=track.windows.seconds,
            model_version=self.model_version,
        )

    def predict(self, path: str | Path) -> Result:
        """One file (convenience for callers that have just one)."""
        return next(iter(self.predict_paths([path])))
