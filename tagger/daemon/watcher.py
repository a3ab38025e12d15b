"""Watch the roots: inotify where it works, polling where it cannot (NFS, SMB/CIFS, FUSE).

Events only say "look at this path". A file is handed on when it is complete: its size and mtime
unchanged for the settle delay, or (inotify) shortly after its close-after-write event. Moves
within the roots are reported as moves so the cache can follow them without re-analysis.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from tagger.display import display
from tagger.library.walk import is_audio_name, within
from tagger.tags.safe_write import being_written

log = logging.getLogger("genre-tagger")
#: File systems that do not deliver inotify events for changes made elsewhere.
NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "davfs",
              "afs", "lustre", "gpfs", "fuse", "fuseblk", "sshfs"}
#: After a close-after-write event a file needs only this long without change.
CLOSED_SETTLE = 0.2


def fs_type(path: str) -> str:
    """The file system type of the mount holding ``path`` (from /proc/self/mounts)."""
    real = os.path.realpath(path)
    best, kind = "", ""
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, parts[2]
    except OSError:
        return ""
    return kind


def wants_polling(root: str, mode: str) -> bool:
    if mode != "auto":
        return mode == "polling"
    kind = fs_type(root)
    return kind in NETWORK_FS or kind.startswith("fuse.")


def _visible(folder: str | None) -> Iterator[os.DirEntry[str]]:
    """A folder's entries but hidden ones (our temporary copies among them: they come and go
    with every write, and watchdog's snapshot stops for good when an entry vanishes between
    being listed and being looked at)."""
    with os.scandir(folder) as it:
        return iter([e for e in it if not e.name.startswith(".")])


def _polling(poll_seconds: float) -> BaseObserver:
    return PollingObserverVFS(os.stat, _visible, polling_interval=poll_seconds)


#: Out of inotify watches (one per folder) or instances (one per root): the folder is polled.
_OUT_OF_INOTIFY = {errno.ENOSPC: "fs.inotify.max_user_watches",
                   errno.EMFILE: "fs.inotify.max_user_instances"}
#: Folders polled on their own under one inotify root before the whole root is polled instead
#: (each poller is a thread that lists its folders every ``poll_seconds``).
MAX_POLLED_FOLDERS = 16


def inotify_limit(setting: str) -> int | None:
    """The lowest of the system's limit and the user namespace's (``user.max_inotify_*``)."""
    name = setting.rsplit(".", 1)[1]
    files = [f"/proc/sys/fs/inotify/{name}",
             f"/proc/sys/user/max_inotify_{name.rsplit('_', 1)[1]}"]
    values = []
    for f in files:
        try:
            with open(f) as fh:
                values.append(int(fh.read()))
        except (OSError, ValueError):
            continue
    return min(values) if values else None


def count_folders(top: str) -> int:
    """Folders at and below ``top`` (each needs an inotify watch; links are not followed)."""
    n, stack = 0, [top]
    while stack:
        folder = stack.pop()
        n += 1
        try:
            with os.scandir(folder) as it:
                stack += [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return n


class _Unwatched(logging.Filter):
    """Catches watchdog's "Unable to watch" (a folder created after start that inotify has no
    watch left for: watchdog logs it and goes on without it) so that folder is polled."""

    def __init__(self) -> None:
        super().__init__()
        self.folders: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) == 2 and isinstance(args[1], OSError) and args[1].errno in _OUT_OF_INOTIFY:
            path = args[0]
            with self._lock:
                self.folders.append((os.fsdecode(path) if isinstance(path, bytes) else str(path),
                                     args[1].errno))
            return False  # said once, our way
        return True

    def take(self) -> list[tuple[str, int]]:
        with self._lock:
            out, self.folders = self.folders, []
        return out


class Watchers:
    """One observer per root: inotify where it works, polling where it cannot (network and FUSE
    file systems) or where inotify runs out of watches, at start or for a folder created later.

    Out of watches at start, watchdog raises; the root is then polled. Later, watchdog logs
    "Unable to watch" and leaves the new folder unwatched (a file copied into it was never
    tagged): that folder gets a poller of its own, and :meth:`check` returns it so the caller
    looks at what arrived before the poller started. Either way the log says once which
    setting to raise and to what.
    """

    def __init__(self, roots: tuple[str, ...], mode: str, poll_seconds: float,
                 handler: FileSystemEventHandler) -> None:
        self.roots, self.mode, self.poll_seconds, self.handler = roots, mode, poll_seconds, handler
        self._observers: dict[str, BaseObserver] = {}  # root -> its observer
        self._pollers: dict[str, BaseObserver] = {}  # unwatched folder -> its poller
        self._polled_roots: set[str] = set()
        self._unwatched = _Unwatched()
        self._said: set[str] = set()
        self.counts = {"inotify": 0, "polling": 0}

    def start(self) -> None:
        logging.getLogger("watchdog.observers.inotify").addFilter(self._unwatched)
        for root in self.roots:
            polling = wants_polling(root, self.mode)
            if polling:
                obs = self._poller(root)
            else:
                obs = Observer()
                obs.schedule(self.handler, root, recursive=True)
                try:
                    obs.start()
                except OSError as e:
                    if e.errno not in _OUT_OF_INOTIFY:
                        raise
                    self._advise(root, e.errno)
                    obs, polling = self._poller(root), True
            self._observers[root] = obs
            if polling:
                self._polled_roots.add(root)
            log.info("observer for %s: %s", display(root), "polling" if polling else "inotify")
        self._count()

    def check(self) -> list[str]:
        """Poll what inotify stopped watching since the last call; returns those folders."""
        new: list[str] = []
        for folder, obs in [*self._observers.items(), *self._pollers.items()]:
            if _running(obs):
                continue
            if not os.path.isdir(folder):  # gone with its folder
                if folder in self._pollers:
                    _stop(self._pollers.pop(folder))
                continue
            # Its thread ended (watchdog's polling stops for good when a file vanishes
            # mid-look): poll it anew, and have what changed meanwhile looked at.
            log.warning("watching %s stopped; it is polled every %g s from now on",
                        display(folder), self.poll_seconds)
            _stop(obs)
            try:
                fresh = self._poller(folder)
            except FileNotFoundError:
                continue  # gone meanwhile: looked at again next time
            if folder in self._pollers:
                self._pollers[folder] = fresh
            else:
                self._observers[folder] = fresh
                self._polled_roots.add(folder)
            new.append(folder)
        for folder, err in self._unwatched.take():
            owner = next((r for r in self.roots if folder == r or folder.startswith(r + os.sep)),
                         None)
            if owner is None or owner in self._polled_roots or any(
                    folder == f or folder.startswith(f + os.sep) for f in self._pollers):
                continue  # already polled
            root = owner
            self._advise(root, err)
            mine = [f for f in self._pollers if f.startswith(root + os.sep)]
            if len(mine) >= MAX_POLLED_FOLDERS:  # too many pollers: the whole root instead
                for f in mine:
                    _stop(self._pollers.pop(f))
                _stop(self._observers[root])
                self._observers[root] = self._poller(root)
                self._polled_roots.add(root)
                new.append(root)
                continue
            try:
                self._pollers[folder] = self._poller(folder)
            except FileNotFoundError:
                continue  # removed again already
            new.append(folder)
        if new:
            self._count()
        return new

    def stop(self) -> None:
        logging.getLogger("watchdog.observers.inotify").removeFilter(self._unwatched)
        everyone = [*self._observers.values(), *self._pollers.values()]
        for obs in everyone:
            obs.stop()
        for obs in everyone:
            obs.join(timeout=5)
        self._observers, self._pollers = {}, {}

    def _poller(self, folder: str) -> BaseObserver:
        for attempt in range(5):
            obs = _polling(self.poll_seconds)
            obs.schedule(self.handler, folder, recursive=True)
            try:
                obs.start()
                return obs
            except FileNotFoundError:  # an entry vanished mid-snapshot (or the folder)
                _stop(obs)
                if attempt == 4 or not os.path.isdir(folder):
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")

    def _count(self) -> None:
        polled = [*self._polled_roots, *self._pollers]
        polling = sum(count_folders(f) for f in polled)
        total = sum(count_folders(r) for r in self.roots)
        self.counts = {"inotify": total - polling, "polling": polling}

    def _advise(self, root: str, err: int) -> None:
        setting = _OUT_OF_INOTIFY[err]
        if setting in self._said:
            return
        self._said.add(setting)
        need = sum(count_folders(r) for r in self.roots if r not in self._polled_roots)
        limit = inotify_limit(setting)
        if err == errno.ENOSPC:
            enough = (limit or 8192) + need  # whatever other programs use, this is enough
            log.warning(
                "inotify cannot watch every folder of %s: it needs one watch per folder (%d "
                "here) and %s is %s, shared by all of this user's programs. Folders it cannot "
                "watch are polled every %g s instead (slower to notice, more disk reads). To "
                "watch them all, raise it: sysctl %s=%d (and put that line in "
                "/etc/sysctl.d/ to keep it)", display(root), need, setting, limit,
                self.poll_seconds, setting, enough)
        else:
            log.warning(
                "inotify cannot watch %s: %s (%s) is used up by this user's programs; it is "
                "polled every %g s instead. To watch it, raise it: sysctl %s=%d",
                display(root), setting, limit, self.poll_seconds, setting, (limit or 128) * 2)


def _stop(obs: BaseObserver) -> None:
    obs.stop()
    if obs.is_alive():
        obs.join(timeout=5)


def _running(obs: BaseObserver) -> bool:
    """The observer and every one of its emitters are still at work."""
    return obs.is_alive() and all(e.is_alive() for e in obs.emitters)


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    stable_since: float
    closed: bool


class Settler:
    """Paths seen in events, handed out once their size and mtime stopped changing and no
    process has them open for writing (a copy that pauses longer than the settle time is still
    a copy in progress)."""

    def __init__(self, settle_seconds: float) -> None:
        self.settle = settle_seconds
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def touch(self, path: str, closed: bool = False) -> None:
        with self._lock:
            p = self._pending.get(path)
            if p is None:
                self._pending[path] = _Pending(-1, -1, time.monotonic(), closed)
            else:
                p.closed = p.closed or closed

    def forget(self, path: str) -> None:
        with self._lock:
            self._pending.pop(path, None)

    def due(self) -> list[str]:
        now = time.monotonic()
        ready = []
        with self._lock:
            for path, p in list(self._pending.items()):
                try:
                    st = os.stat(path)
                except OSError:
                    del self._pending[path]  # vanished before it settled
                    continue
                if (st.st_size, st.st_mtime_ns) != (p.size, p.mtime_ns):
                    p.size, p.mtime_ns, p.stable_since = st.st_size, st.st_mtime_ns, now
                    continue
                wait = CLOSED_SETTLE if p.closed else self.settle
                if now - p.stable_since < wait:
                    continue
                if being_written(path):  # a copy paused longer than the settle time
                    p.stable_since, p.closed = now, False
                    continue
                ready.append(path)
                del self._pending[path]
        return ready

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._pending)


def _hidden(path: str, roots: tuple[str, ...]) -> bool:
    for root in roots:
        if path.startswith(root.rstrip("/") + "/"):
            return any(part.startswith(".") for part in Path(path[len(root):]).parts)
    return Path(path).name.startswith(".")


class Handler(FileSystemEventHandler):
    """Turns watchdog events into settle candidates, moves and deletions.

    An event is a hint, never the truth: a polling observer compares inode numbers between two
    looks, so a file replaced by a rename (our own tag writes; any editor's save) comes back
    as "deleted" and "created", and a freed inode number taken by another new file reads as a
    "move" from one file to the other (seen on ntfs-3g, exfat-fuse, bindfs: 10-16 false lines
    per 12 files, and one file's history moved onto another's name). So a deletion is
    believed only when the path is really gone, and a move only when its source is gone;
    whoever receives a move (``on_move``) checks that the file at the new path is the one the
    old path held. Everything else is "look at this path": its size and mtime against the
    cache decide, so our own writes never re-queue a file on any observer.
    """

    def __init__(self, roots: tuple[str, ...], settler: Settler,
                 on_move: Callable[[str, str], None], on_delete: Callable[[str], None]) -> None:
        self.roots = roots
        self.settler = settler
        self.on_move = on_move
        self.on_delete = on_delete

    def _ours(self, path: str) -> bool:
        return is_audio_name(path) and not _hidden(path, self.roots)

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory and self._ours(str(event.src_path)):
            self.settler.touch(str(event.src_path))

    on_modified = on_created

    def on_closed(self, event: FileSystemEvent) -> None:
        if not event.is_directory and self._ours(str(event.src_path)):
            self.settler.touch(str(event.src_path), closed=True)

    def on_moved(self, event: FileSystemEvent) -> None:
        src, dest = str(event.src_path), str(getattr(event, "dest_path", ""))
        if event.is_directory:
            return
        inside = within(dest, self.roots) and self._ours(dest)
        if os.path.lexists(src):  # not a move: an inode number taken again (polling)
            if self._ours(src):
                self.settler.touch(src)
            if inside:
                self.settler.touch(dest)
            return
        if inside and self._ours(src) and within(src, self.roots):
            self.on_move(src, dest)
        if inside:
            self.settler.touch(dest)
        elif self._ours(src):
            self.on_delete(src)

    def on_deleted(self, event: FileSystemEvent) -> None:
        path = str(event.src_path)
        if event.is_directory or not self._ours(path):
            return
        if os.path.lexists(path):  # replaced, not deleted (a rename over it: polling's view)
            self.settler.touch(path)
            return
        self.settler.forget(path)
        self.on_delete(path)
