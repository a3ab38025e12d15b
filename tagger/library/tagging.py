"""The tagger: the one way genres are written, for every front door that writes.

Choose once (the model's rule, or the album's set), decide by policy, record the intent, write
(verified, crash-safe: :func:`tagger.tags.write_genres`), record the outcome. ``scan``, the
daemon's batches and ``revert`` all write through :class:`Tagger` (a revert's write has its
intent like any other); the beets plugin decides with the same policy and decision key and lets
beets write. A process killed between the intent and the record is settled by
:meth:`Tagger.finish_interrupted` before the next writes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tagger.analysis.model.resolved import Model
from tagger.analysis.taxonomy import Selection
from tagger.cache import Cache, Intent, TrackRow
from tagger.cache.store import Status
from tagger.errors import Code, TagError
from tagger.faults import checkpoint
from tagger.formats.identity import audio_identity, trusted
from tagger.library.policy import IN_WORDS, Policy, Why, decide, same_genres
from tagger.library.walk import real_roots
from tagger.tags import TagOptions, held_open, read_genres, write_genres
from tagger.tags.safe_write import open_under

#: Tag-stage failures that say "not now" rather than "not this file": retried on the next scan
#: (and by the daemon, with backoff).
TRANSIENT: frozenset[Code] = frozenset({"busy", "changed", "timeout", "write-error", "disk-full",
                                       "missing"})

#: The code of a file in a format whose tags genre-tagger cannot write ("not supported: FORMAT").
UNSUPPORTED = "unsupported-format"

#: The decision key of a file ``revert`` put back: the person's choice, left alone by every
#: front door until they ask (``scan --retag-reverted``).
REVERTED = "reverted"

#: The decision key of a file whose genres a person set in the page (accepted ours, or
#: replaced them): their label, left alone by every front door (``--retag-reverted`` too).
CORRECTED = "corrected"

#: The decision keys of files a person settled.
PERSONS: frozenset[str] = frozenset({REVERTED, CORRECTED})


#: What happened to a file (or a folder the walk could not read) in a scan or revert.
#: ``rescored``: a trained model decided from the audio's stored features (nothing decoded).
Action = Literal["unchanged", "analysed", "reused", "rescored", "moved", "failed", "recovered",
                 "unreadable", "reverted", "skipped", "corrected"]


@dataclass
class Outcome:
    path: str
    action: Action
    old: list[str] | None = None
    new: list[str] | None = None
    decision: Why | None = None
    error: Code | None = None
    reason: str | None = None
    #: Album mode: the key of the album whose genre set the file got (``albums.describe``).
    album: str | None = None


@dataclass(frozen=True)
class WriteOptions:
    """How the tagger writes: the policy, the tag format options, and two front-door choices."""

    policy: Policy = "missing"
    tags: TagOptions = field(default_factory=TagOptions)
    dry_run: bool = False
    #: Tag files a person reverted (``revert``) again; otherwise no front door writes them.
    retag_reverted: bool = False


class Tagger:
    """Choose, decide, write and record, for one cache under one model and one decision key.

    ``roots``: where writes may go, resolved at each write (a root that is a symlink may be
    pointed elsewhere while a daemon runs).
    """

    def __init__(self, options: WriteOptions, model: Model, selection: Selection, cache: Cache,
                 decision_key: str, roots: Callable[[], tuple[str, ...]]) -> None:
        self.options = options
        self.model = model
        self.selection = selection
        self.cache = cache
        self.decision_key = decision_key
        self.roots = roots

    def choose(self, genre_scores: dict[str, float]) -> list[str]:
        """The genres the model's rule chooses from these scores (a file's, or its album's)."""
        return [g for g, _ in self.model.choose(genre_scores, self.selection)]

    def apply(self, path: str, row: TrackRow, action: Action, st: os.stat_result,
              chosen: list[str] | None = None) -> Outcome:
        """Choose genres from the cached scores (or take ``chosen``: its album's), let the
        policy decide, write, record.

        ``st`` is the file's stat when it was found: if the file differs from it when the new
        copy is about to replace it, nothing is written (it changed after it was analysed).
        """
        if chosen is None:
            chosen = self.choose(row.genre_scores)
        if row.decision_key == CORRECTED or (row.decision_key == REVERTED
                                             and not self.options.retag_reverted):
            if not self.options.dry_run:  # its new stat, so it is not looked at again
                self.cache.upsert(path, size=st.st_size, mtime_ns=st.st_mtime_ns)
            if row.decision_key == CORRECTED:
                return Outcome(path, action, decision="corrected",
                               reason="you set its genres in the page")
            return Outcome(path, action, decision="reverted",
                           reason="you reverted it; 'scan --retag-reverted' tags it again")
        status: Status = "done" if chosen else "abstained"
        roots = self.roots()
        # Read from the file found under the roots (a FIFO swapped in since the walk is never
        # opened); one outside them is this file's failure: said once, not every scan.
        try:
            with held_open(path, roots) as fh:
                current = read_genres(path, self.options.tags, fh)
        except TagError as e:
            return self._failure(path, action, chosen, status, None, e)
        d = decide(current, chosen, self.options.policy, row.genres_written, row.genres_before,
                   key=self.selection.genres.same)
        outcome = Outcome(path, action, old=current, new=d.new, decision=d.why)
        if self.options.dry_run:
            return outcome
        values: dict[str, Any] = {"genres_chosen": chosen, "status": status, "error_code": None,
                                  "error_reason": None, "decision_key": self.decision_key,
                                  "genres_seen": current if d.new is None else d.new}
        if d.new is None:
            self.cache.upsert(path, **values, **_tags_only_change(path, st, row))
            return outcome
        before = (row.genres_before or []) if row.genres_written is not None else current
        try:
            write(self.cache, self.options.tags, Intent(path, current, before, d.new,
                                                        self.decision_key), st, roots,
                  **values, genres_written=d.new, genres_before=before)
        except TagError as e:
            return self._failure(path, action, chosen, status, current, e)
        return outcome

    def _failure(self, path: str, action: Action, chosen: list[str], status: Status,
                 current: list[str] | None, e: TagError) -> Outcome:
        """A transient failure (busy, changed...) is retried by the next scan; any other is
        recorded as the file's failure, retried when the file changes."""
        if e.code in TRANSIENT:
            self.cache.upsert(path, genres_chosen=chosen, status=status, decision_key=None)
        else:
            self.cache.upsert(path, genres_chosen=chosen, status="failed", error_code=e.code,
                              error_reason=e.reason, decision_key=self.decision_key)
        return Outcome(path, action, old=current, error=e.code, reason=e.reason)


def write(cache: Cache, tags: TagOptions, intent: Intent, st: os.stat_result,
          roots: tuple[str, ...], **record: Any) -> os.stat_result:
    """The one write sequence: the intent first (a kill after it is settled by
    :func:`finish_interrupted_writes`), the verified, crash-safe write, then the record (with
    the file's new stat). A :class:`TagError` drops the intent and is raised; nothing changed."""
    cache.begin_write(intent)
    checkpoint("after-intent")
    try:
        new_st = write_genres(intent.path, intent.new, tags, expect=st, roots=roots)
    except TagError:
        cache.drop_intent(intent.path)
        raise
    cache.finish_write(intent.path, **record, written_at=time.time(), size=new_st.st_size,
                       mtime_ns=new_st.st_mtime_ns)
    checkpoint("after-commit")
    return new_st


def in_words(row: TrackRow, now: list[str] | None, policy: Policy,
             key: Callable[[str], str]) -> str | None:
    """What genre-tagger did with the file, or why it left it alone, in words (``show`` and
    the page): the policy's decision on what the file carries ``now`` (what the next scan
    would do). None: failed, or its genres cannot be read."""
    if row.decision_key in PERSONS:
        return IN_WORDS["reverted" if row.decision_key == REVERTED else "corrected"]
    if row.status not in ("done", "abstained") or now is None:
        return None
    if row.genres_written is not None and same_genres(now, row.genres_written):
        return IN_WORDS["write"]
    d = decide(now, list(row.genres_chosen), policy, row.genres_written, row.genres_before, key=key)
    if d.new is None:
        return IN_WORDS[d.why]
    return f"not written yet: the next scan writes {'; '.join(d.new) or '(none)'}"


def _tags_only_change(path: str, st: os.stat_result, row: TrackRow) -> dict[str, int]:
    """The file's stat now, if only its tags changed since it was found (its genres were
    just read to decide, and its audio is the one analysed): a symlink whose target this
    scan tagged under its real name. Anything else keeps the stat that was analysed."""
    try:
        fd = open_under(path, None)  # a regular file (never a FIFO), read through its descriptor
    except OSError:
        return {}
    try:
        now = os.fstat(fd)
        if (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            return {}
        if trusted(row.audio_id) and audio_identity(f"/proc/self/fd/{fd}") == row.audio_id:
            return {"size": now.st_size, "mtime_ns": now.st_mtime_ns}
    except OSError:
        pass
    finally:
        os.close(fd)
    return {}


def finish_interrupted_writes(cache: Cache, tags: TagOptions) -> list[Outcome]:
    """Settle the tag writes a killed process left between its intent and its record.

    The file shows whether the rename happened: still its genres from before the write, it did
    not (the intent is dropped); anything else, it did (recorded as ours, with the genres from
    before our first write, so ``revert`` restores them; a person's edit since is then seen as
    one, as it would have been without the kill).
    """
    done = []
    for it in cache.abandoned_intents():
        try:
            with held_open(it.path, None) as fh:
                now, st = read_genres(it.path, tags, fh), os.fstat(fh.fileno())
        except (TagError, OSError):
            cache.drop_intent(it.path)
            continue
        if same_genres(now, it.current):
            cache.drop_intent(it.path)
            continue
        if it.decision_key in PERSONS:  # a revert's or a person's: theirs, not ours
            cache.finish_write(it.path, genres_written=None, genres_before=None,
                               written_at=time.time(), size=st.st_size, mtime_ns=st.st_mtime_ns,
                               decision_key=it.decision_key, genres_seen=now)
        else:
            cache.finish_write(it.path, genres_written=it.new, genres_before=it.before,
                               written_at=time.time(), size=st.st_size, mtime_ns=st.st_mtime_ns,
                               decision_key=it.decision_key, genres_seen=now)
        done.append(Outcome(it.path, "recovered", old=it.current, new=it.new, decision="write"))
    return done


def revert(roots: tuple[str, ...], cache: Cache, tags: TagOptions, dry_run: bool = False) -> list[Outcome]:
    """Put back the genres files had before we wrote; skip files a person edited since.

    ``roots`` match files below them by whole folder names, as given and as resolved (a
    library scanned through a symlinked folder is reverted by its real path too). Each write
    has its intent, as a scan's has; a reverted file is left alone by every front door until
    the person asks again (:data:`REVERTED`).
    """
    if not dry_run:
        finish_interrupted_writes(cache, tags)  # so every write we made can be put back
    real = real_roots(roots)
    rows = cache.rows_under(tuple(os.path.abspath(r) for r in roots) + real, resolve=True)
    return [revert_file(row, cache, tags, real, dry_run) for row in rows
            if row.genres_written is not None]


def revert_file(row: TrackRow, cache: Cache, tags: TagOptions, real: tuple[str, ...],
                dry_run: bool = False) -> Outcome:
    """Put back one file's genres from before our first write (``revert``, and the page's
    revert of a file or an album): only if it still carries what we wrote, and is under the
    ``real`` roots."""
    path = row.path
    if row.genres_written is None:
        return Outcome(path, "skipped", decision=None, reason="genre-tagger has not written it")
    before = row.genres_before or []
    found = _look(path, tags, real)
    if isinstance(found, Outcome):
        return found
    st, current = found
    if not same_genres(current, row.genres_written):
        return Outcome(path, "skipped", old=current, decision="edited-since",
                       reason="a person changed its genres after we wrote them")
    if not dry_run:
        try:  # with its intent, as every write
            write(cache, tags, Intent(path, current, before, before, REVERTED), st, real,
                  genres_written=None, genres_before=None, decision_key=REVERTED,
                  genres_seen=before)
        except TagError as e:
            return Outcome(path, "failed", error=e.code, reason=e.reason)
    return Outcome(path, "reverted", old=current, new=before)


def _look(path: str, tags: TagOptions,
          real: tuple[str, ...]) -> tuple[os.stat_result, list[str]] | Outcome:
    """The file's stat and genres before a page's or a revert's write, or its failure: both
    of the one regular file under the ``real`` roots that was opened (one outside them, or a
    FIFO, is never opened; a file swapped in after this is "changed" to the write)."""
    try:
        with held_open(path, real) as fh:
            return os.fstat(fh.fileno()), read_genres(path, tags, fh)
    except TagError as e:
        return Outcome(path, "failed", error=e.code, reason=e.reason)


def correct(row: TrackRow, genres: list[str], seen: list[str], cache: Cache, tags: TagOptions,
            real: tuple[str, ...]) -> Outcome:
    """A person's genres for one file (the page's accept and replace): written through
    :func:`write` like a scan's, and recorded as theirs (:data:`CORRECTED`), so training and
    learning take them as a label and no front door changes them again.

    ``seen``: the genres the person saw the file carry. If it carries others now (another
    program, a person, a scan since the page was drawn), nothing is written: their choice was
    made on what is no longer there.
    """
    path = row.path
    if row.status in ("deleted", "pending"):
        return Outcome(path, "skipped", reason="genre-tagger has not analysed it (yet): "
                                               "scan it first" if row.status == "pending"
                                               else "it is gone from the library")
    found = _look(path, tags, real)
    if isinstance(found, Outcome):
        return found
    st, current = found
    if current != seen:  # exactly: the page sends what it read
        return Outcome(path, "skipped", old=current, decision="edited-since",
                       reason=f"its genres changed since the page showed them (now: "
                              f"{'; '.join(current) or 'none'}); nothing written")
    record: dict[str, Any] = {"genres_written": None, "genres_before": None,
                              "decision_key": CORRECTED, "genres_seen": genres}
    if row.status == "failed" and row.genre_scores:  # analysed; its tag write had failed
        record.update(status="done" if row.genres_chosen else "abstained", error_code=None,
                      error_reason=None)
    if current == genres:  # accepted as they are (exactly: a case is a correction too)
        cache.upsert(path, **record)
        return Outcome(path, "corrected", old=current, new=genres, decision="corrected")
    try:
        write(cache, tags, Intent(path, current, row.genres_before or current, genres, CORRECTED),
              st, real, **record)
    except TagError as e:
        return Outcome(path, "failed", old=current, error=e.code, reason=e.reason)
    return Outcome(path, "corrected", old=current, new=genres, decision="corrected")
