"""Watch the roots: inotify where it works, polling where it cannot (NFS, SMB/CIFS, FUSE).

Events only say "look at this path". A file is handed on when it is complete: its size and mtime
unchanged for the settle delay, or (inotify) shortly after its close-after-write event. Moves
within the roots are reported as moves so the cache can follow them without re-analysis.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from tagger.library.walk import is_audio_name, within
from tagger.tags.safe_write import being_written

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


def make_observer(root: str, mode: str, poll_seconds: float) -> BaseObserver:
    if wants_polling(root, mode):
        return PollingObserver(timeout=poll_seconds)
    return Observer()


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
