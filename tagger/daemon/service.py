"""The daemon: watch, queue, analyse and tag, until told to stop.

Start-up: open the cache, start one observer per root, then reconcile (walk the roots and queue
every file whose size or mtime differs from the cache: whatever changed while the daemon was
down; no decoding for unchanged files), then tell systemd READY=1.

Work: one worker (this thread) takes at most ``batch_files`` queued paths at a time and runs them
through the same scanner as ``genre-tagger scan`` (cache fast path, identity reuse, engine,
policy, crash-safe writes). Memory is bounded by the batch, whatever the queue length.

Learning (``learn = true``): when the queue is empty and ``learn_seconds`` have passed since the
last look, a thread runs one round of :func:`tagger.training.learning.learn` (minutes at most:
stored features only); the worker notices a switch (its own, or one made by ``genre-tagger
learn`` or ``learn --back`` on any machine sharing the cache) within seconds and re-decides the
library from the cache.

Signals: SIGTERM/SIGINT finish the batch in hand and exit 0 (the bound is one batch: with the
defaults, 8 files, about 15 s on a 2-core CPU; the unit allows 90 s); SIGHUP re-reads the config.
Their handlers only set a :class:`~tagger.stopping.Flag` (no lock: safe in any burst).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from tagger.analysis.engine import Analysis
from tagger.cache import Cache, TrackRow
from tagger.cache.learning import Decisions
from tagger.cache.owners import HEARTBEAT, process_id
from tagger.cache.queue import DaemonState, WorkQueue
from tagger.cache.store import is_damaged
from tagger.daemon.notify import notify, watchdog_interval
from tagger.daemon.watcher import Handler, Settler, Watchers
from tagger.display import display
from tagger.errors import CacheUnavailable, EnvironmentProblem, ModelFileError
from tagger.formats.identity import audio_identity
from tagger.library.albums import album_of
from tagger.library.learned import resolve
from tagger.library.pipeline import Hold, Scanner, gone_under
from tagger.library.policy import IN_WORDS
from tagger.library.tagging import PERSONS, TRANSIENT, UNSUPPORTED, Outcome
from tagger.library.walk import unreadable_reason, walk
from tagger.services import scanner
from tagger.settings import Settings
from tagger.stopping import Flag, on_signals

if TYPE_CHECKING:  # the page needs the web extra: imported only when listen is set
    from tagger.web import Running
from tagger.tags.safe_write import being_written

log = logging.getLogger("genre-tagger")
#: Exit status when the cache was lost under the daemon (EX_TEMPFAIL: systemd's
#: Restart=on-failure starts it again, with a new cache).
CACHE_LOST_EXIT = 75
#: After a machine's problem (ffmpeg gone, out of memory) the worker waits this long.
MACHINE_RETRY_SECONDS = 60
#: How often the worker asks the cache whether learning switched the model (one indexed query).
MODEL_CHECK_SECONDS = 2.0
#: While another process learns (the lease is taken), look again after this long.
LEARN_BUSY_SECONDS = 60.0
#: At SIGTERM a learning round is asked to stop; the daemon waits this long for it (a fold of a
#: large library may take longer: its lease then lapses, and nothing half-decided is recorded).
LEARN_STOP_SECONDS = 10.0



class Daemon:
    def __init__(self, load_config: Callable[[], Settings], stop: Flag | None = None,
                 reload: Flag | None = None) -> None:
        """``stop``/``reload``: flags the caller's signal handlers already set (installed
        before the slow start-up, so a signal then is not lost or fatal)."""
        self.load_config = load_config
        self.config = load_config()
        self.stop = stop or Flag()
        self.reload = reload or Flag()
        self.started = time.time()
        #: Who this run is in a shared database (its queue claims, its published state).
        self.id = process_id(self.started)
        self.cache = _open_cache(self.config.cache_url, self.id)
        self.queue = WorkQueue(self.cache)
        self.state = DaemonState(self.cache)
        self.settler = Settler(self.config.settle_seconds)
        self.watchers: Watchers | None = None
        self._scanner: Scanner | None = None
        #: The learning decision whose model the scanner uses (None: the setting's own).
        self.in_use: int | None = None
        self._learner: threading.Thread | None = None
        self._learn_not_before = 0.0
        self._next_model_check = 0.0
        self.processed = 0
        self.failed = 0
        self.day = time.strftime("%Y-%m-%d")
        self.processed_today = 0
        #: Why the cache can no longer record anything (then the daemon stops, exit 75).
        self.lost: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def run(self) -> int:
        on_signals({signal.SIGTERM: self.stop.set, signal.SIGINT: self.stop.set,
                    signal.SIGHUP: self.reload.set})
        page = self._start_page()  # first: an address in use stops the start, said in words
        self._start_observers()
        # Another run's files on this machine, claimed when it was killed: taken again now.
        self.queue.release_dead()
        queued = self.reconcile()
        # Earlier runs' documents are kept for today's count ("processed today" outlives restarts).
        self.state.forget_before(_start_of_today())
        self.state.set(state="running", pid=os.getpid(), started_at=self.started,
                       roots=list(self.config.roots), processed=0, failed=0, heartbeat=time.time(),
                       watched=self._watchers().counts, learn=self.config.learn,
                       processed_day=self.day, processed_today=0)
        log.info("watching %s; %d files queued at start-up", ", ".join(map(display, self.config.roots)),
                 queued)
        notify(f"READY=1\nSTATUS=watching {len(self.config.roots)} folders, {queued} queued")
        ping = watchdog_interval()
        last_ping = last_status = pause = time.monotonic()
        beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        beat.start()
        try:
            while not self.stop.is_set():
                if self._cache_lost(self.cache.lost()):
                    break
                try:
                    pause = self._step(pause)
                except (SQLAlchemyError, CacheUnavailable) as e:
                    # lost between the check and this step (else a database's own error)
                    why = self.cache.lost(thorough=True)
                    if why is None and is_damaged(e):
                        why = f"the cache database is damaged ({display(str(e))})"
                    if self._cache_lost(why):
                        break
                    raise
                now = time.monotonic()
                if ping and now - last_ping >= ping:
                    notify("WATCHDOG=1")
                    last_ping = now
                if now - last_status >= self.config.status_seconds:
                    self._status_line()
                    last_status = now
        finally:
            notify("STOPPING=1")
            if page is not None:
                page.stop()
            if self.watchers is not None:
                self.watchers.stop()
            self.stop.set()  # ends the heartbeat and a learning round
            beat.join(timeout=5)
            if self._learner is not None:
                self._learner.join(timeout=LEARN_STOP_SECONDS)
            if self.lost is None:  # a lost cache gets nothing more: it is not ours now
                self.queue.release()
                self.state.set(state="stopped", stopped_at=time.time())
                log.info("stopped; %d files still queued", len(self.queue))
            self.cache.close()
        if self.lost is not None:
            log.error("%s while the daemon ran: stopped before tagging anything it could not "
                      "record. Genres written since it started cannot be undone by 'revert' (their "
                      "history was in that database). Started again, the daemon makes a new cache "
                      "and analyses the library anew.", display(self.lost))
            return CACHE_LOST_EXIT
        return 0

    def _start_page(self) -> Running | None:
        """The page, when the config sets ``listen`` (its own cache connection, this process's
        settings as started: a SIGHUP does not move it)."""
        if not self.config.listen:
            return None
        from tagger import web

        # a writer of its own in the cache: its write intents are not this worker's to settle
        running = web.start(self.config, _open_cache(self.config.cache_url, process_id()))
        log.info("the page: http://%s/%s", self.config.listen,
                 " (read-only)" if self.config.web_read_only else "")
        return running

    def _step(self, pause: float) -> float:
        """One turn of the worker: re-read the config if asked, queue what settled, process a
        batch (or wait a moment). Returns when it may take a batch next (after a machine's
        problem, a pause)."""
        if self.reload.is_set():
            self._reload()
        if time.monotonic() >= self._next_model_check:
            self._next_model_check = time.monotonic() + MODEL_CHECK_SECONDS
            try:
                self._model_check()
                self._maybe_learn()
            except SQLAlchemyError as e:  # a database hiccup: the next check tries again
                if self.cache.lost() is not None:
                    raise
                log.warning("learning: %s", display(str(e)))
        unwatched = self._watchers().check()
        if unwatched:  # what arrived there before its poller started
            self.reconcile(unwatched)
            self.state.set(watched=self._watchers().counts)
        for path in self.settler.due():
            self._enqueue_if_changed(path)
        due = time.monotonic() >= pause
        batch = self.queue.take(self.config.batch_files, self.config.roots) if due else []
        if not batch:
            self.stop.wait(0.25)
            return pause
        try:
            self._process(batch)
        except EnvironmentProblem as e:  # the machine's fault: no file is blamed
            log.error("cannot analyse now: %s; the batch stays queued, retrying in %d s",
                      display(str(e)), MACHINE_RETRY_SECONDS)
            self.queue.release()  # a daemon sharing the queue may do it meanwhile
            # an engine that met the machine's fault (a lost GPU, a dead decoder pool) is not
            # trusted again: the next batch loads a new one
            self._scanner = None
            return time.monotonic() + MACHINE_RETRY_SECONDS
        return pause

    def _start_observers(self) -> None:
        cfg = self.config
        self.watchers = Watchers(cfg.roots, cfg.observer, cfg.poll_seconds,
                                 Handler(cfg.roots, self.settler, self._moved, self._deleted))
        self.watchers.start()

    def _watchers(self) -> Watchers:
        assert self.watchers is not None, "started in run()"
        return self.watchers

    def _reload(self) -> None:
        self.reload.clear()
        try:
            new = self.load_config()
        except Exception as e:
            log.error("SIGHUP: keeping the old configuration: %s", display(str(e)))
            return
        page = ("listen", "web_secret", "web_read_only", "roots", "policy")
        if any(getattr(new, k) != getattr(self.config, k) for k in page) and self.config.listen:
            log.warning("SIGHUP: the page keeps the settings it started with (listen, "
                        "web_secret, web_read_only, roots, policy) until the daemon restarts")
        if self._adopt(new):
            log.info("SIGHUP: configuration re-read")

    def _adopt(self, new: Settings) -> bool:
        """Work under ``new`` settings (and the model in use for them): a new scanner, keeping
        the loaded engine when the model and its run config are unchanged; every file decided
        again (from the cache) when what decisions depend on changed. False: the model in use
        cannot be had (its file cannot be written), and nothing changed."""
        roots_changed = new.roots != self.config.roots or new.observer != self.config.observer
        old = self.scanner
        try:
            in_use = resolve(new, self.cache)
            fresh = scanner(in_use.settings, self.cache)
            engine = old.loaded_engine
            if engine is not None and fresh.config == old.config \
                    and engine.model.version == fresh.model.version:
                fresh = scanner(in_use.settings, self.cache, engine)
            # else the model (or a model file retrained in place), device, batch size,
            # budget...: loaded anew when needed
        except ModelFileError as e:
            log.error("keeping the model in use: %s", display(str(e)))
            return False
        self.config = new
        self.in_use = in_use.switch.id if in_use.switch is not None else None
        self._scanner = fresh
        self.state.set(learn=new.learn)
        self.settler.settle = new.settle_seconds
        logging.getLogger().setLevel(new.log_level.upper())
        if roots_changed:
            self._watchers().stop()
            self._start_observers()
            self.state.set(roots=list(new.roots), watched=self._watchers().counts)
        if roots_changed or self.scanner.decision_key != old.decision_key:
            # a new model, genre map, policy, album mode...: every file is decided again
            # (from the cache: nothing is analysed again)
            self.reconcile()
        return True

    # --- learning ------------------------------------------------------------------------------

    def _model_check(self) -> None:
        """Learning switched (or went back) since the scanner was built: adopt the model."""
        last = Decisions(self.cache).latest(self.config.model)
        want = last.in_use if last is not None else None
        if want == self.in_use or last is None:
            return
        if self._adopt(self.config):
            log.info("model: now %s (%s)", self.scanner.model.version, display(last.why))
        else:  # its file cannot be written here: said once a minute, not every check
            self._next_model_check = time.monotonic() + MACHINE_RETRY_SECONDS

    def _maybe_learn(self) -> None:
        """Start a learning round when learning is on, the library is quiet (nothing queued or
        settling), none is running, and ``learn_seconds`` have passed since the last look (by
        any process sharing the cache)."""
        if not self.config.learn or (self._learner is not None and self._learner.is_alive()):
            return
        if time.time() < self._learn_not_before or len(self.settler) or len(self.queue):
            return
        look = Decisions(self.cache).last_look(self.config.model)
        if look is not None and time.time() - float(look["at"]) < self.config.learn_seconds:
            return
        self._learner = threading.Thread(target=self._learn, args=(self.config,), name="learn",
                                         daemon=True)
        self._learner.start()

    def _learn(self, settings: Settings) -> None:
        from tagger.training.learning import learn

        try:
            done = learn(settings, self.cache, lambda text: log.info("%s", display(text)),
                         self.stop)
        except EnvironmentProblem as e:  # scikit-learn not installed: said once per period
            log.error("learning: %s", display(str(e)))
            with contextlib.suppress(Exception):
                Decisions(self.cache).looked(settings.model, f"cannot learn: {e}")
            return
        except Exception as e:  # a round that fails must not end the daemon
            log.exception("learning failed: %s", display(str(e)))
            with contextlib.suppress(Exception):
                Decisions(self.cache).looked(settings.model, f"failed: {e}")
            return
        if done.result == "busy":  # not again every few seconds while the other one works
            self._learn_not_before = time.time() + min(LEARN_BUSY_SECONDS,
                                                       settings.learn_seconds)
        log.info("learning: %s", display(done.said))

    # --- queueing ------------------------------------------------------------------------------

    @property
    def scanner(self) -> Scanner:
        """The daemon's one scanner, for its life: its score source keeps the engine between
        batches. Rebuilt when SIGHUP changes the settings (keeping the engine if they leave
        the model as it was)."""
        if self._scanner is None:
            self._scanner = self._new_scanner(None)
        return self._scanner

    def _new_scanner(self, engine: Analysis | None) -> Scanner:
        """A scanner under the settings, with the model in use for them (learning's, if it
        switched)."""
        try:
            in_use = resolve(self.config, self.cache)
            made = scanner(in_use.settings, self.cache, engine)
        except ModelFileError as e:  # the learnt model's file cannot be had here: said, and
            # the setting's own model tags meanwhile (the model check tries again in a minute)
            log.error("%s; using the 'model' setting's model meanwhile", display(str(e)))
            self._next_model_check = time.monotonic() + MACHINE_RETRY_SECONDS
            self.in_use = None
            return scanner(self.config, self.cache, engine, learnt=False)
        self.in_use = in_use.switch.id if in_use.switch is not None else None
        return made

    def reconcile(self, folders: list[str] | None = None) -> int:
        """Queue every file (under ``folders``, by default the roots) not settled in the cache:
        new, changed while the daemon was down, or analysed but not yet tagged when it was
        killed."""
        tops = tuple(folders or self.config.roots)
        index = self.cache.stat_index()
        scanner = self.scanner
        n = 0
        def unreadable(path: str, e: OSError) -> None:
            log.warning("%s: %s", display(path), unreadable_reason(path, e))

        for path, st in walk(tops, on_error=unreadable):
            if scanner.settled(index.get(path), st):
                continue
            if self._unsettled(st, path):  # mid-copy while we were down: settle it first
                self.settler.touch(path)
            else:
                self.queue.put(path, "reconcile")
            n += 1
        for path in gone_under(index, tops):  # the scan's rule: gone, not merely unreadable
            self._deleted(path)
        return n

    def _enqueue_if_changed(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        known = self.cache.stat_index(paths=[path]).get(path)
        if self.scanner.settled(known, st):
            return  # our own tag write, or a touch that changed nothing we track
        self.queue.put(path, "changed" if known else "new")

    def _moved(self, src: str, dest: str) -> None:
        """``src`` is gone and ``dest`` appeared: its history follows only if ``dest`` is the
        file ``src`` was (a rename keeps size and mtime; then the audio decides). Otherwise
        ``src`` was deleted and ``dest`` is another file (the handler has it settle as new)."""
        row = self.cache.get(src)
        if row is not None and not _same_file_as(row, dest):
            self._deleted(src)
            return
        if row is not None:
            self.cache.move(src, dest)
            log.info("moved %s -> %s", display(src), display(dest))
            if self.config.album:  # maybe into another album: decided again with it
                if row.decision_key in PERSONS:  # the person's still, wherever it goes
                    self.cache.upsert(dest, album_key=None)
                else:
                    self.cache.upsert(dest, album_key=None, decision_key=None)
                self.queue.put(dest, "moved")

    def _deleted(self, path: str) -> None:
        if self.cache.get(path) is not None:
            self.cache.upsert(path, status="deleted")
            log.info("deleted %s", display(path))

    # --- work ----------------------------------------------------------------------------------

    def _unsettled(self, st: os.stat_result, path: str) -> bool:
        """Still being written: changed within the settle time, or open for writing."""
        return time.time() - st.st_mtime < self.config.settle_seconds or being_written(path)

    def _cache_lost(self, why: str | None) -> bool:
        """Stop for good when the cache is gone (deleted, replaced, overwritten, damaged): a tag
        written now could never be undone, and status would read another database."""
        if why is None:
            return False
        self.lost = self.lost or why
        self.stop.set()
        return True

    def _heartbeat(self) -> None:
        """Every HEARTBEAT s, even while a long batch is in hand: keep this daemon's queue
        claims, free those of daemons known to have ended (a kill -9 on this machine), and say
        it is alive (``status`` on any machine reads it)."""
        while not self.stop.wait(HEARTBEAT):
            if self._cache_lost(self.cache.lost(thorough=True)):
                return
            try:
                self.queue.renew()
                self.queue.release_dead()
                self.state.set(heartbeat=time.time())
            except Exception as e:  # a database hiccup: the next beat tries again
                log.warning("heartbeat: %s", display(str(e)))

    def _process(self, batch: list[str]) -> None:
        items = []
        done = []
        for path in batch:
            try:
                st = os.stat(path)
            except OSError:
                self._deleted(path)
                done.append(path)
                continue
            if being_written(path):  # written again since it settled
                self.settler.touch(path)  # handed back once complete
                done.append(path)
                continue
            items.append((path, st))
        if items:
            hold = self._album_incomplete([p for p, _ in items]) if self.config.album else None
            report = self.scanner.run(paths=items, on_outcome=self._log_outcome, hold=hold)
            for o in report.outcomes:
                if o.decision == "wait-album":  # analysed; decided once its album is complete
                    self.queue.later(o.path, self.config.settle_seconds + 1.0)
                    continue
                if o.error in TRANSIENT and self.queue.retry_later(o.path):
                    continue
                done.append(o.path)
            seen = {o.path for o in report.outcomes}
            done += [p for p, _ in items if p not in seen]  # unchanged since queued
        self.queue.done(done)
        self._publish()

    def _album_incomplete(self, batch: list[str]) -> Hold:
        """Whether an album may still be arriving: a file in one of its folders is being
        written (settling, and not as we last recorded it: our own tag writes settle too), or
        a queued file (other than this batch's and the album's own) has the album's key. Held
        files stay queued and are looked at again after the settle time."""
        mine = set(batch)
        settling = [p for p in self.settler.paths() if p not in mine]
        recorded = self.cache.stat_index(paths=settling) if settling else {}
        queued = [p for p in self.queue.paths() if p not in mine]
        keys: dict[str, str] = {}

        def arriving(path: str) -> bool:
            try:
                st = os.stat(path)
            except OSError:
                return False  # gone: nothing more is coming
            known = recorded.get(path)
            return known is None or (known.size, known.mtime_ns) != (st.st_size, st.st_mtime_ns)

        def incomplete(key: str, members: list[str]) -> bool:
            folders = {os.path.dirname(m) for m in members}
            if any(os.path.dirname(p) in folders and arriving(p) for p in settling):
                return True
            ours = set(members)
            for p in queued:
                if p not in ours and os.path.dirname(p) in folders:
                    if p not in keys:
                        keys[p] = album_of(p)
                    if keys[p] == key:
                        return True
            return False

        return incomplete

    def _log_outcome(self, o: Outcome) -> None:
        self.processed += 1
        today = time.strftime("%Y-%m-%d")
        if today != self.day:
            self.day, self.processed_today = today, 0
        self.processed_today += 1
        if o.error == UNSUPPORTED:
            log.info("%s: %s", display(o.path), display(o.reason or o.error))
        elif o.error:
            self.failed += 1
            log.warning("%s: %s (%s)", display(o.path), display(o.reason or ""), o.error)
        elif o.decision == "write":
            log.info("%s: %s -> %s", display(o.path), display("; ".join(o.old or [])) or "(none)",
                     display("; ".join(o.new or [])))
        elif o.decision is not None:  # left alone: why, in words
            log.info("%s: %s", display(o.path), IN_WORDS[o.decision])
        else:
            log.info("%s: %s", display(o.path), o.action)
        self._publish()  # per file: a kill mid-batch loses no count

    def _publish(self) -> None:
        self.state.set(processed=self.processed, failed=self.failed, heartbeat=time.time(),
                       processed_day=self.day, processed_today=self.processed_today)
        notify(f"STATUS={self.processed} files processed, {len(self.queue)} queued")

    def _status_line(self) -> None:
        up = max(time.time() - self.started, 1e-9)
        log.info("status: %d processed (%d failed), %d queued, %d settling, %.1f files/min",
                 self.processed, self.failed, len(self.queue), len(self.settler),
                 self.processed / up * 60)
        self.state.set(heartbeat=time.time())


def _open_cache(url: str | None, owner: str) -> Cache:
    """The daemon's cache. A damaged SQLite file (overwritten, or lost under an earlier run)
    is moved aside, with its -wal and -shm (a stale log must never meet a new database), and
    a new one begins: unattended under systemd, refusing would be a restart loop that tags
    nothing; the person finds the old one beside it, named for the day it was set aside."""
    try:
        cache = Cache(url, owner=owner)
    except CacheUnavailable as e:
        if e.problem != "damaged" or e.path is None:
            raise
        why, path = str(e), e.path
    else:
        # A file overwritten under an earlier run may open: that run's log, replayed into it,
        # gave it a valid first page. Every page is read once here (14 ms per 10,000 tracks).
        damaged = cache.lost(thorough=True)
        if damaged is None or cache.file is None:
            return cache
        cache.close()
        why, path = damaged, cache.file
    aside = f"{path}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(path + suffix, aside + suffix)
    log.error("%s; it was moved aside to %s and a new cache begins (genres written before "
              "cannot be undone by 'revert'; the library is analysed anew)",
              display(why), display(aside))
    return Cache(url, owner=owner)


def _same_file_as(row: TrackRow, path: str) -> bool:
    """Is the file at ``path`` the one ``row`` describes? A rename keeps size and mtime to
    the nanosecond, which a file that merely took a freed inode number never matches; else
    (edited, then moved) the audio decides, read only then: a folder of a thousand files
    renamed costs no hashing."""
    try:
        st = os.stat(path)
        if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns):
            return True
        return row.audio_id is not None and audio_identity(path) == row.audio_id
    except OSError:
        return False


def _start_of_today() -> float:
    now = time.localtime()
    return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))


def setup_logging(level: str) -> None:
    """One line per event. Under systemd (``JOURNAL_STREAM`` set) the journal stamps each
    line itself; anywhere else (a terminal, a file) the line carries its own time."""
    stamped = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level.upper(), format=f"{stamped}%(levelname)s %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S", force=True)
    logging.getLogger("watchdog").setLevel(logging.WARNING)


__all__ = ["Daemon", "setup_logging"]
