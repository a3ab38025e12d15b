"""``genre-tagger scan``: bring a whole library's genres up to date, resumably.

For each audio file under the roots, cheapest first:

1. unchanged: its size and mtime match the cache and it was decided under the same model,
   policy and selection: nothing is read (this is what makes a rescan nearly free);
2. known audio: its audio identity (a hash of the audio payload, not the tags) matches a cached
   analysis: its own row after a tag edit, or another path's after a move, rename or copy:
   the cached scores are reused, nothing is decoded;
3. otherwise the engine analyses it (in cross-track batches).

Steps 2 and 3 are the score source's (:mod:`tagger.library.scores`); the tagger
(:mod:`tagger.library.tagging`) then chooses, decides by policy and writes, crash-safely. Every
outcome is recorded in the cache, so an interrupted scan resumes where it stopped. The scanner
itself walks, settles what is unchanged, claims what it works on, and groups albums.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Analysis, Failure
from tagger.analysis.taxonomy import album_scores
from tagger.cache import Cache, TrackRow
from tagger.cache.queue import Claims, WorkQueue
from tagger.cache.store import StatEntry
from tagger.library.albums import album_of
from tagger.library.policy import Policy, decision_key
from tagger.library.scores import Scored, ScoreSource, failure_key
from tagger.library.tagging import (
    CORRECTED,
    PERSONS,
    REVERTED,
    UNSUPPORTED,
    Outcome,
    Tagger,
    WriteOptions,
    finish_interrupted_writes,
)
from tagger.library.walk import real_roots, unreadable_reason, walk
from tagger.stopping import Flag, Stop
from tagger.tags import TagOptions


@dataclass(frozen=True)
class ScanOptions:
    roots: tuple[str, ...]
    policy: Policy = "missing"
    dry_run: bool = False
    tags: TagOptions = field(default_factory=TagOptions)
    #: Analyse files that failed before even if nothing about them changed.
    retry_failed: bool = False
    #: One genre set per album (album and album artist tags, else the folder).
    album: bool = False
    #: Tag files a person reverted (``revert``) again; otherwise no front door writes them.
    retag_reverted: bool = False


#: Album mode: (album key, its files) -> True while more of it may still arrive.
Hold = Callable[[str, list[str]], bool]


def gone_under(index: Mapping[str, StatEntry], tops: Iterable[str],
               seen: Container[str] = frozenset()) -> list[str]:
    """The paths the cache knows under ``tops`` (not marked deleted, not ``seen`` by a walk just
    now) whose file is gone: not there at all. A path that cannot be looked at now (a folder
    without permission, a mount that went away) is not called deleted: its history stays."""
    prefixes = tuple(os.path.join(os.path.abspath(t), "") for t in tops)
    gone = []
    for path, known in index.items():
        if known.status == "deleted" or path in seen or not path.startswith(prefixes):
            continue
        try:
            os.lstat(path)
        except FileNotFoundError:
            gone.append(path)
        except OSError:
            continue
    return gone


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
        if o.error == UNSUPPORTED:  # said per file and counted, not a failure: nothing is wrong
            self.counts["unsupported"] += 1
        elif o.error:
            self.failures[o.error] += 1
        if o.decision:
            names = {"write": "tagged", "abstain": "abstained"}
            self.counts[names.get(o.decision, f"left:{o.decision}")] += 1

    def summary(self, dry_run: bool = False) -> str:
        """The scan's last line: what became of every file, why files were left alone
        (``has-genre 29, same 3``: ``show FILE`` says it in words), and the failures by reason."""
        c = self.counts
        fails = ", ".join(f"{k} {v}" for k, v in self.failures.most_common()) or "none"
        files = sum(c[a] for a in ("unchanged", "analysed", "reused", "rescored", "moved",
                                   "failed"))
        left = sorted((k.removeprefix("left:"), v) for k, v in c.items()
                      if k.startswith("left:") and v)
        why = f" ({', '.join(f'{k} {v}' for k, v in left)})" if left else ""
        rescored = f", {c['rescored']} re-decided from stored features" if c["rescored"] else ""
        unsupported = (f"{c['unsupported']} not supported (their format); "
                       if c["unsupported"] else "")
        return (f"{'dry run: ' if dry_run else ''}{files} files: "
                f"{c['analysed']} analysed, {c['reused'] + c['moved']} from the cache "
                f"({c['moved']} moved){rescored}, {c['unchanged']} unchanged; {c['tagged']} "
                f"{'would be ' if dry_run else ''}tagged, {c['abstained']} abstained, "
                f"{sum(v for _, v in left)} left as they were{why}; {unsupported}"
                f"failed: {fails}"
                f"{' (interrupted: run the same scan again to resume)' if self.interrupted else ''}")

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "failures": dict(self.failures),
                "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
                "files": [o.__dict__ for o in self.outcomes if o.action != "unchanged"]}


class Scanner:
    """One scan over some roots; the engine is only loaded if something needs analysing."""

    def __init__(self, options: ScanOptions, engine_config: EngineConfig, cache: Cache,
                 engine: Analysis | None = None) -> None:
        """``engine``: one already loaded (the daemon's, kept between batches), or the same
        analysis on a Ray cluster; else a local one, loaded when a file needs analysing."""
        self.options = options
        self.config = engine_config
        self.cache = cache
        self.source = ScoreSource(engine_config, cache, engine)
        self.model = self.source.model
        self.decision_key = decision_key(options.policy, engine_config.selection, options.tags,
                                         self.model.version, options.album)
        self.failure_key = failure_key()
        self.scores = self.source.scores
        o = options
        self.tagger = Tagger(WriteOptions(o.policy, o.tags, o.dry_run, o.retag_reverted),
                             self.model, engine_config.selection, cache, self.decision_key,
                             lambda: self.roots)

    @property
    def roots(self) -> tuple[str, ...]:
        """The roots' real locations, resolved at each use: the daemon keeps one scanner for its
        life, and a root that is a symlink may be pointed elsewhere meanwhile."""
        return real_roots(self.options.roots)

    @property
    def loaded_engine(self) -> Analysis | None:
        """The engine if this scan needed (and so loaded) one: the daemon keeps it for the next
        batch."""
        return self.source.loaded_engine

    def settled(self, known: StatEntry | None, st: os.stat_result) -> bool:
        """Nothing to do: same size and mtime as cached, and decided under this model, policy
        and selection. A failure is retried when the file changes, or what it depended on: the
        settings for a tag-stage failure, genre-tagger's and the decoder's version for an
        analysis failure (``failure_key``), or when asked (``retry_failed``).

        A file analysed but not yet written (a kill between the two) is not settled.
        """
        if known is None or (known.size, known.mtime_ns) != (st.st_size, st.st_mtime_ns):
            return False
        if known.status in ("deleted", "pending"):  # back, or never analysed: not settled
            return False
        if known.decision_key == CORRECTED:
            return True
        if known.decision_key == REVERTED:
            return not self.options.retag_reverted
        if known.status == "failed":
            return not self.options.retry_failed and known.decision_key in (
                self.decision_key, self.failure_key)
        return (known.status != "deleted" and known.model_version == self.model.version
                and known.decision_key == self.decision_key)

    # --- the scan ----------------------------------------------------------------------------

    def run(self, stop: Stop | None = None,
            on_total: Callable[[int], None] | None = None,
            on_outcome: Callable[[Outcome], None] | None = None,
            paths: Iterable[tuple[str, os.stat_result]] | None = None,
            hold: Hold | None = None,
            on_wait: Callable[[int], None] | None = None) -> ScanReport:
        """Scan the roots, or only ``paths`` (with their stat) when given (the daemon's batches).

        ``hold`` (album mode): given an album's key and files, True while more of it may still
        arrive (the daemon's settling and queued files): its files are analysed, not decided
        (outcome ``wait-album``; the daemon looks at them again soon).

        Walking the roots itself, a scan claims what it works on through the cache's queue;
        ``on_wait`` hears how many files another process (the daemon, a second scan) holds
        while this one waits for them.
        """
        stop = stop or Flag()
        report = ScanReport()
        started = time.perf_counter()

        def record(o: Outcome) -> None:
            report.add(o)
            if on_outcome:
                on_outcome(o)

        if not self.options.dry_run:
            for o in finish_interrupted_writes(self.cache, self.options.tags):
                record(o)
        given = None if paths is None else list(paths)
        index = self.cache.stat_index(paths=None if given is None else [p for p, _ in given])
        pending: list[tuple[str, os.stat_result]] = []
        seen: set[str] = set()
        def unreadable(path: str, e: OSError) -> None:
            record(Outcome(path, "unreadable", error="unreadable-folder",
                           reason=unreadable_reason(path, e)))

        for path, st in (walk(self.options.roots, on_error=unreadable) if given is None else given):
            seen.add(path)
            if self.settled(index.get(path), st):
                report.counts["unchanged"] += 1
            else:
                pending.append((path, st))
        if given is None and not self.options.dry_run and (gone := self._mark_deleted(index, seen)):
            report.counts["deleted"] = gone
        if on_total:
            on_total(len(pending))

        counted = seen if given is None else set()
        if given is not None or self.options.dry_run:  # the daemon claimed its batch itself
            self._decide(pending, stop, record, report, counted, hold)
        else:
            with Claims(WorkQueue(self.cache), "scan") as claims:
                self._claimed(pending, claims, stop, record, report, counted, on_wait)
        report.interrupted = stop.is_set()
        report.seconds = time.perf_counter() - started
        return report

    def _claimed(self, pending: list[tuple[str, os.stat_result]], claims: Claims, stop: Stop,
                 record: Callable[[Outcome], None], report: ScanReport, counted: set[str],
                 on_wait: Callable[[int], None] | None) -> None:
        """Work on the pending files this scan can claim; wait for those another process
        (a daemon, a second scan) holds, then look again: done by it meanwhile (the usual
        case) they are unchanged, else this scan does them. No file is analysed twice, and
        no file the other process tagged is reported as a failure here."""
        def settle(o: Outcome) -> None:
            record(o)
            claims.done(o.path)

        stats = dict(pending)
        for paths, waited in claims.rounds(list(stats), stop, on_wait):
            if not waited:
                self._decide([(p, stats[p]) for p in paths], stop, settle, report, counted, None)
                continue
            # let go by the other process: done by it (settled: counted, not done again)?
            index = self.cache.stat_index(paths=paths)
            todo = []
            for p in paths:
                try:
                    st = os.stat(p)
                except OSError:
                    claims.done(p)  # gone meanwhile: the next scan marks it
                    continue
                if self.settled(index.get(p), st):
                    report.counts["unchanged"] += 1
                    claims.done(p)
                else:
                    todo.append((p, st))
            self._decide(todo, stop, settle, report, counted, None)

    def _decide(self, pending: list[tuple[str, os.stat_result]], stop: Stop,
                record: Callable[[Outcome], None], report: ScanReport, counted: set[str],
                hold: Hold | None) -> None:
        if self.options.album:
            self._by_album(pending, stop, record, report, counted, hold)
            return
        for found in self.scores(pending, stop):
            if isinstance(found.result, Failure):
                r = found.result
                record(Outcome(r.path, "failed", error=r.code, reason=r.reason))
            else:
                record(self.tagger.apply(found.path, found.result, found.action, found.stat))

    def _mark_deleted(self, index: dict[str, StatEntry], seen: set[str]) -> int:
        """Rows under the roots whose file is gone say so."""
        gone = gone_under(index, self.options.roots, seen)
        for path in gone:
            self.cache.upsert(path, status="deleted")
        return len(gone)

    # --- one genre set per album -----------------------------------------------------------------

    def _by_album(self, pending: list[tuple[str, os.stat_result]], stop: Stop,
                  record: Callable[[Outcome], None], report: ScanReport, counted: set[str],
                  hold: Hold | None) -> None:
        """Score every pending file, then decide each album once all its pending files have
        scores: one genre set from the mean of its tracks' scores (the album's files the cache
        knows and that did not change join in, so a track added later re-decides its album).
        ``counted``: files this run already counted as unchanged."""
        key_of = {path: album_of(path) for path, _ in pending}
        todo: dict[str, set[str]] = {}
        for path, key in key_of.items():
            todo.setdefault(key, set()).add(path)
        known = self.cache.album_members(todo)
        mine = tuple(os.path.join(os.path.abspath(r), "") for r in self.options.roots)
        scored: dict[str, list[Scored]] = {}
        for found in self.scores(pending, stop):
            key = key_of[found.path]
            self.cache.upsert(found.path, album_key=key)
            if isinstance(found.result, Failure):
                r = found.result
                record(Outcome(r.path, "failed", error=r.code, reason=r.reason))
            else:
                scored.setdefault(key, []).append(found)
            todo[key].discard(found.path)
            if not todo[key]:  # other roots' files of the same album are theirs to decide
                others = [p for p in known.get(key, []) if p not in key_of and p.startswith(mine)]
                self._decide_album(key, scored.pop(key, []), others, record, report, counted, hold)

    def _decide_album(self, key: str, own: list[Scored], others: list[str],
                      record: Callable[[Outcome], None], report: ScanReport, counted: set[str],
                      hold: Hold | None) -> None:
        members = list(own)
        for path in others:
            row = self.cache.get(path)
            if (row is None or row.status not in ("done", "abstained") or not row.genre_scores
                    or row.model_version != self.model.version):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_size, st.st_mtime_ns) != (row.size, row.mtime_ns):
                continue  # changed since: it is pending itself (or will be)
            members.append(Scored(path, st, row, "reused"))
            if path in counted:
                report.counts["unchanged"] -= 1  # re-decided with its album: counted below
        if not members:
            return
        if hold is not None and hold(key, [m.path for m in members]):
            for m in own:  # not decided: no stale key may make it look settled
                if not (isinstance(m.result, TrackRow) and m.result.decision_key in PERSONS):
                    self.cache.upsert(m.path, decision_key=None)  # (a reverted file stays so)
                record(Outcome(m.path, m.action, decision="wait-album"))
            return
        rows = [(m, m.result) for m in members if isinstance(m.result, TrackRow)]
        scores = album_scores([row.genre_scores for _, row in rows])
        chosen = self.tagger.choose(scores)
        for m, row in rows:
            record(replace(self.tagger.apply(m.path, row, m.action, m.stat, chosen), album=key))


def resolve(paths: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(Path(p).absolute()) for p in paths)
