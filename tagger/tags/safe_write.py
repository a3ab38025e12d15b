"""Crash-safe replacement of a file: edit a copy in the same folder, verify, fsync, rename over.

``rename(2)`` within one file system is atomic, so a SIGKILL or power cut at any moment leaves
the original path holding either the old bytes or the new ones, never a mix. What the rename
must never do is replace a file that someone is still writing (a copy in progress would go on
into the unlinked old inode, and the library would keep a cut file), or one that changed since
it was analysed. So, immediately before the rename:

* the file must not be open for writing by any process. We hold a read lease on it
  (``F_SETLEASE``), which the kernel grants only when no process has it open for writing, and
  which makes any process that opens it for writing meanwhile wait until we are done (the system
  unit grants ``CAP_LEASE`` for files of other users). Where a lease cannot be had (another
  user's file without the capability, NFS, ...) the open descriptors in ``/proc`` are checked
  instead, which sees every process we are allowed to see;
* its inode, size, mtime and ctime must equal what was analysed (``expect``) and what was copied.

Temporary copies are ``.genre-tagger-XXXXXXXXXXXX.tmp`` (always 30 bytes, so any name that fits
the file system can be tagged), locked with ``flock`` while their writer lives: a copy whose
lock can be taken belongs to a dead process and is removed at once by the next walk.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tagger.faults import checkpoint
from tagger.tags.base import TagWriteError

TEMP_PREFIX = ".genre-tagger-"
TEMP_SUFFIX = ".tmp"
_TEMP = re.compile(r"\.genre-tagger-[0-9a-f]{12}\.tmp\Z")
#: Names left by releases before 0.2 (unlocked; removed once old enough to be surely dead).
_LEGACY_TEMP = re.compile(r"\..*\.genre-tagger\.tmp(\.info)?\Z", re.DOTALL)
LEGACY_STALE_SECONDS = 600
#: A new copy exists for a moment before its writer locks it; never touch one this young.
YOUNG_SECONDS = 2.0
_F_RDLCK, _F_UNLCK = 0, 2  # fcntl(2) lease types
_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)


def _explain(path: Path, e: OSError) -> TagWriteError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return TagWriteError(path, "the disk is full; the file was left as it was", "disk-full")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TagWriteError(path, f"not allowed to write here ({e.strerror})", "read-only")
    if e.errno == errno.ENOENT:
        return TagWriteError(path, "the file vanished while being tagged", "missing")
    return TagWriteError(path, f"write failed: {e.strerror or e}", "write-error")


def _writable_bits(mode: int) -> bool:
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _fingerprint(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What any write to the file changes (ctime too: it moves even when mtime is put back)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def changed_since(expect: os.stat_result, now: os.stat_result) -> bool:
    """Did the file change? Without ctime (a stat from the cache) size and mtime decide."""
    if expect.st_ctime_ns == 0:
        return (expect.st_size, expect.st_mtime_ns) != (now.st_size, now.st_mtime_ns)
    return _fingerprint(expect) != _fingerprint(now)


# --- temporary copies ----------------------------------------------------------------------------


def is_temp_name(name: str) -> bool:
    return bool(_TEMP.match(name) or _LEGACY_TEMP.match(name))


@contextlib.contextmanager
def locked_temp(folder: Path) -> Iterator[tuple[Path, int]]:
    """A new hidden file in ``folder``, locked for as long as we hold it; removed on the way out
    unless it was renamed away."""
    while True:
        tmp = folder / f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp, fd
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
        os.close(fd)


def remove_if_stale(path: str, now: float | None = None) -> bool:
    """Remove a temporary copy whose writer is dead (its lock is free); True if removed."""
    name = os.path.basename(path)
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return False
        age = (now or time.time()) - st.st_ctime  # not mtime: copies carry the original's
        if _LEGACY_TEMP.match(name):
            if age > LEGACY_STALE_SECONDS:
                os.unlink(path)
                return True
            return False
        if not _TEMP.match(name) or age < YOUNG_SECONDS:
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False  # a live writer holds it
    try:
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# --- is anyone writing it? -----------------------------------------------------------------------


def _writers_in_proc(st: os.stat_result) -> list[int]:
    """Pids of processes (that we may see) holding the file open for writing."""
    found = []
    me = os.getpid()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.stat(f"/proc/{pid}/fd/{fd}")
                if (target.st_dev, target.st_ino) != (st.st_dev, st.st_ino):
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next((int(line.split()[1], 8) for line in info
                                  if line.startswith("flags:")), 0)
            except (OSError, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                found.append(int(pid))
                break
    return found


def _quiet_lease_breaks() -> None:
    # A lease break is signalled with SIGIO, whose default action ends the process. We clear the
    # descriptor's owner right after taking a lease (no signal at all); this covers the instant
    # in between, where we can (signal handlers belong to the main thread).
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGIO) == signal.SIG_DFL:
        signal.signal(signal.SIGIO, signal.SIG_IGN)


@contextlib.contextmanager
def no_writers(path: Path) -> Iterator[os.stat_result]:
    """Hold ``path`` while no process has it open for writing; yields its stat, taken inside.

    Raises ``TagWriteError(code="busy")`` when someone is writing it.
    """
    busy = TagWriteError(path, "another program is still writing the file; left for later", "busy")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    leased = False
    try:
        _quiet_lease_breaks()
        try:
            fcntl.fcntl(fd, _F_SETLEASE, _F_RDLCK)
            leased = True
            fcntl.fcntl(fd, fcntl.F_SETOWN, 0)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                raise busy from None
        st = os.fstat(fd)
        if not leased and _writers_in_proc(st):
            raise busy
        yield st
    finally:
        if leased:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETLEASE, _F_UNLCK)
        os.close(fd)


def being_written(path: str | Path) -> bool:
    """Is the file open for writing by some process right now (a copy still going on)?"""
    try:
        with no_writers(Path(path)):
            return False
    except TagWriteError:
        return True
    except OSError:
        return False


# --- the replacement -----------------------------------------------------------------------------


def replace_atomically(path: Path, edit: Callable[[Path], None], keep_mtime: bool = True,
                       expect: os.stat_result | None = None) -> os.stat_result:
    """Copy ``path``, let ``edit`` change (and verify) the copy, then put it in place atomically.

    A symlink is written through (the link stays a link). ``expect`` is the file's stat when it
    was analysed: if the file differs from it now, nothing is written (code ``changed``). Mode,
    owner and (unless ``keep_mtime`` is off) the modification time are carried over. A file or
    folder without write permission is refused even for root: it is the owner's intent.
    Returns the stat of the file now in place.
    """
    path = Path(path)
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise TagWriteError(path, "no such file", "missing") from None
    except OSError as e:
        raise _explain(path, e) from None
    if not stat.S_ISREG(st.st_mode):
        raise TagWriteError(path, "not a regular file", "not-a-file")
    changed = TagWriteError(path, "the file changed while it was being tagged; left for next time",
                            "changed")
    if expect is not None and changed_since(expect, st):
        raise changed
    if not _writable_bits(st.st_mode) or not os.access(real, os.W_OK):
        raise TagWriteError(path, "the file is read-only", "read-only")
    folder = real.parent
    if not _writable_bits(os.stat(folder).st_mode) or not os.access(folder, os.W_OK | os.X_OK):
        raise TagWriteError(path, "its folder is read-only (a new copy cannot be written there)",
                            "read-only")
    try:
        with locked_temp(folder) as (tmp, fd):
            with open(real, "rb") as src:
                if _fingerprint(os.fstat(src.fileno())) != _fingerprint(st):
                    raise changed
                with open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            edit(tmp)
            os.fsync(fd)
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
                # Not root: the copy stays ours, which only matters on shared folders.
                with contextlib.suppress(PermissionError):
                    os.chown(tmp, st.st_uid, st.st_gid)
            if keep_mtime:
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            new = os.stat(tmp)
            checkpoint("after-temp-write")
            with no_writers(real) as now:
                if _fingerprint(now) != _fingerprint(st):
                    raise changed
                os.replace(tmp, real)
            checkpoint("after-rename")
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise _explain(path, e) from None
    return new


__all__ = ["being_written", "changed_since", "is_temp_name", "locked_temp", "no_writers",
           "remove_if_stale", "replace_atomically"]
