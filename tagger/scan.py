"""``genre-tagger scan``: bring a whole library's genres up to date, resumably.

For each audio file under the roots, cheapest first:

1. unchanged: its size and mtime match the cache and it was decided under the same model,
   policy and selection: nothing is read (this is what makes a rescan nearly free);
2. known audio: its audio identity (a hash of the audio payload, not the tags) matches a cached
   analysis: its own row after a tag edit, or another path's after a move, rename or copy:
   the cached scores are reused, nothing is decoded;
3. otherwise the engine analyses it (in cross-track batches).

Then the policy decides what to write, and the write is crash-safe. Every outcome is recorded in
the cache, so an interrupted scan resumes where it stopped.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagger.cache import Cache, TrackRow
from tagger.cache.store import StatEntry
from tagger.config import EngineConfig
from tagger.engine import Engine, Failure
from tagger.model.catalog import model_version
from tagger.policy import Policy, decide
from tagger.reuse import cached_row, copy_scores, record_prediction
from tagger.tags import TagOptions, TagWriteError, read_genres, write_genres
from tagger.taxonomy import choose
from tagger.walk import real_roots, walk, within


@dataclass(frozen=True)
class ScanOptions:
    roots: tuple[str, ...]
    policy: Policy = "missing"
    dry_run: bool = False
    tags: TagOptions = field(default_factory=TagOptions)


@dataclass
class Outcome:
    path: str
    action: str  # unchanged | analysed | reused | moved | failed
    old: list[str] | None = None
    new: list[str] | None = None
    decision: str | None = None
    error: str | None = None
    reason: str | None = None


@dataclass
class ScanReport:
    counts: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    def add(self, o: Outcome) -> None:
        self.outcomes.append(o)
        self.counts[o.action] += 1
        if o.error:
            self.failures[o.error] += 1
        if o.decision:
            names = {"write": "tagged", "abstain": "abstained"}
            self.counts[names.get(o.decision, f"left:{o.decision}")] += 1

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "failures": dict(self.failures),
                "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
                "files": [o.__dict__ for o in self.outcomes if o.action != "unchanged"]}


class Scanner:
    """One scan over some roots; the engine is only loaded if something needs analysing."""

    def __init__(self, options: ScanOptions, engine_config: EngineConfig, cache: Cache,
                 engine: Engine | None = None) -> None:
        self.options = options
        self.config = engine_config
        self.cache = cache
        self._engine = engine
        self.roots = real_roots(options.roots)
        self.version = engine.model_version if engine else model_version(engine_config.model)
        sel = engine_config.selection
        t = options.tags
        self.decision_key = (f"{options.policy}|{sel.top_k}|{sel.min_confidence}|{sel.relative}|"
                             f"{t.id3_version}|{t.id3v23_separator}|{self.version}")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(self.config)
        return self._engine

    def settled(self, known: StatEntry | None, st: os.stat_result) -> bool:
        """Nothing to do: same size and mtime as cached, and decided under this model, policy
        and selection (a failure is about the file, so it is retried only when the file changes).

        A file analysed but not yet written (a kill between the two) is not settled.
        """
        if known is None or (known[0], known[1]) != (st.st_size, st.st_mtime_ns):
            return False
        return known[3] == "failed" or (known[2] == self.version and known[4] == self.decision_key)

    # --- the scan ----------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None,
            on_total: Callable[[int], None] | None = None,
            on_outcome: Callable[[Outcome], None] | None = None,
            paths: Iterable[tuple[str, os.stat_result]] | None = None) -> ScanReport:
        """Scan the roots, or only ``paths`` (with their stat) when given (the daemon's batches)."""
        stop = stop or threading.Event()
        report = ScanReport()
        started = time.perf_counter()

        def record(o: Outcome) -> None:
            report.add(o)
            if on_outcome:
                on_outcome(o)

        given = None if paths is None else list(paths)
        index = self.cache.stat_index(paths=None if given is None else [p for p, _ in given])
        pending: list[tuple[str, os.stat_result]] = []
        for path, st in (walk(self.options.roots) if given is None else given):
            if self.settled(index.get(path), st):
                report.counts["unchanged"] += 1
            else:
                pending.append((path, st))
        if on_total:
            on_total(len(pending))

        to_analyse: dict[str, tuple[os.stat_result, str | None]] = {}
        for path, st in pending:
            if stop.is_set():
                report.interrupted = True
                break
            outcome = self._without_analysis(path, st, to_analyse)
            if outcome:
                record(outcome)
        if to_analyse and not stop.is_set():
            self._analyse(to_analyse, stop, record)
        report.interrupted = report.interrupted or stop.is_set()
        report.seconds = time.perf_counter() - started
        return report

    def _without_analysis(self, path: str, st: os.stat_result,
                          to_analyse: dict[str, tuple[os.stat_result, str | None]]) -> Outcome | None:
        """Settle a changed or new file from the cache if its audio is known; else queue it.

        (Failed files with an unchanged stat never get here: :meth:`run` counts them unchanged.)
        """
        found, audio_id = cached_row(self.cache, path, st, self.version)
        if found is None:
            to_analyse[path] = (st, audio_id)
            return None
        if found.path == path:  # its own row: a tag edit, or a new policy or selection
            self.cache.upsert(path, size=st.st_size, mtime_ns=st.st_mtime_ns, audio_id=audio_id)
            return self._apply(path, found, "reused")
        if not os.path.exists(found.path):
            self.cache.move(found.path, path, size=st.st_size, mtime_ns=st.st_mtime_ns)
            return self._apply(path, self.cache.get(path) or found, "moved")
        copy_scores(self.cache, path, found, st, audio_id)
        return self._apply(path, self.cache.get(path) or found, "reused")

    def _analyse(self, todo: dict[str, tuple[os.stat_result, str | None]], stop: threading.Event,
                 record: Callable[[Outcome], None]) -> None:
        # Files with the same audio (a track on an album and on a compilation) are analysed once.
        copies: dict[str, list[str]] = {}
        first: list[str] = []
        for path, (_, audio_id) in todo.items():
            if audio_id and audio_id in copies:
                copies[audio_id].append(path)
            else:
                first.append(path)
                if audio_id:
                    copies[audio_id] = []

        def feed() -> Iterator[str]:
            for path in first:
                if stop.is_set():
                    return  # in-flight files finish; the rest wait for the next scan
                yield path

        for result in self.engine.predict_paths(feed()):
            st, audio_id = todo[result.path]
            record_prediction(self.cache, result, st, audio_id, self.version)
            if isinstance(result, Failure):
                record(Outcome(result.path, "failed", error=result.code, reason=result.reason))
                continue
            row = self.cache.get(result.path)
            assert row is not None
            record(self._apply(result.path, row, "analysed"))
            for dup in copies.get(audio_id or "", []):
                copy_scores(self.cache, dup, row, todo[dup][0], audio_id)
                dup_row = self.cache.get(dup)
                assert dup_row is not None
                record(self._apply(dup, dup_row, "reused"))

    # --- writing -----------------------------------------------------------------------------

    def _apply(self, path: str, row: TrackRow, action: str) -> Outcome:
        """Choose genres from the cached scores, let the policy decide, write, record."""
        chosen = [g for g, _ in choose(row.genre_scores, self.config.selection)]
        status = "done" if chosen else "abstained"
        if not within(path, self.roots):
            self.cache.upsert(path, genres_chosen=chosen, status=status)
            return Outcome(path, action, error="outside-roots",
                           reason="its real location is outside the library roots; not written")
        try:
            current = read_genres(path, self.options.tags)
        except TagWriteError as e:
            self.cache.upsert(path, genres_chosen=chosen, status=status)
            return Outcome(path, action, error=e.code, reason=e.reason)
        d = decide(current, chosen, self.options.policy, row.genres_written, row.genres_before)
        outcome = Outcome(path, action, old=current, new=d.new, decision=d.why)
        if self.options.dry_run:
            return outcome
        values: dict[str, Any] = {"genres_chosen": chosen, "status": status,
                                  "decision_key": self.decision_key}
        if d.new is not None:
            try:
                write_genres(path, d.new, self.options.tags)
            except TagWriteError as e:
                self.cache.upsert(path, genres_chosen=chosen, status=status)
                return Outcome(path, action, old=current, error=e.code, reason=e.reason)
            st = os.stat(path)
            values.update(genres_written=d.new, written_at=time.time(), size=st.st_size,
                          mtime_ns=st.st_mtime_ns,
                          genres_before=row.genres_before if row.genres_written is not None else current)
        self.cache.upsert(path, **values)
        return outcome


def revert(roots: tuple[str, ...], cache: Cache, tags: TagOptions, dry_run: bool = False) -> list[Outcome]:
    """Put back the genres files had before we wrote; skip files a person edited since."""
    outcomes = []
    real = real_roots(roots)
    prefixes = tuple(os.path.abspath(r) for r in roots)
    for row in cache.rows_under(prefixes):
        if row.genres_written is None:
            continue
        path = row.path
        before = row.genres_before or []
        try:
            current = read_genres(path, tags)
        except TagWriteError as e:
            outcomes.append(Outcome(path, "failed", error=e.code, reason=e.reason))
            continue
        if [g.casefold() for g in current] != [g.casefold() for g in row.genres_written]:
            outcomes.append(Outcome(path, "skipped", old=current, decision="edited-since",
                                    reason="a person changed its genres after we wrote them"))
            continue
        if not within(path, real):
            outcomes.append(Outcome(path, "failed", error="outside-roots", reason="outside the roots"))
            continue
        if not dry_run:
            try:
                write_genres(path, before, tags)
            except TagWriteError as e:
                outcomes.append(Outcome(path, "failed", error=e.code, reason=e.reason))
                continue
            st = os.stat(path)
            cache.upsert(path, genres_written=None, genres_before=None, decision_key=None,
                         size=st.st_size, mtime_ns=st.st_mtime_ns, written_at=time.time())
        outcomes.append(Outcome(path, "reverted", old=current, new=before))
    return outcomes


def resolve(paths: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(Path(p).absolute()) for p in paths)
