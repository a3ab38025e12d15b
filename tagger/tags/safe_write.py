"""Crash-safe replacement of a file: edit a copy in the same folder, fsync, rename over.

``rename(2)`` within one file system is atomic, so a SIGKILL or power cut at any moment leaves
the original path holding either the old bytes or the new ones, never a mix. At worst a hidden
``.NAME.*.genre-tagger.tmp`` copy is left behind, which :func:`remove_stale_temps` cleans up.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".genre-tagger.tmp"


def _fail(path: Path, reason: str, code: str) -> Exception:
    from tagger.tags.api import TagWriteError

    return TagWriteError(path, reason, code)


def _explain(path: Path, e: OSError) -> Exception:
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return _fail(path, "the disk is full; the file was left as it was", "disk-full")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return _fail(path, f"not allowed to write here ({e.strerror})", "read-only")
    if e.errno == errno.ENOENT:
        return _fail(path, "the file vanished while being tagged", "missing")
    return _fail(path, f"write failed: {e.strerror or e}", "write-error")


def _writable_bits(mode: int) -> bool:
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def replace_atomically(path: Path, edit: Callable[[Path], None], keep_mtime: bool = True) -> None:
    """Copy ``path``, let ``edit`` change the copy, then atomically put it in place.

    Mode, owner and (unless ``keep_mtime`` is off) the modification time are carried over. A file
    or folder without write permission is refused even for root: it is the owner's intent.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, "no such file", "missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, "not a regular file", "not-a-file")
    if not _writable_bits(st.st_mode) or not os.access(path, os.W_OK):
        raise _fail(path, "the file is read-only", "read-only")
    folder = path.parent
    if not _writable_bits(os.stat(folder).st_mode) or not os.access(folder, os.W_OK | os.X_OK):
        raise _fail(path, "its folder is read-only (a new copy cannot be written there)", "read-only")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as e:
        raise _explain(path, e) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        edit(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        if hasattr(os, "chown") and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            # Not root: the copy stays ours, which only matters on shared folders.
            with contextlib.suppress(PermissionError):
                os.chown(tmp, st.st_uid, st.st_gid)
        if keep_mtime:
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        now = os.stat(path)
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_ino, st.st_size, st.st_mtime_ns):
            raise _fail(path, "the file changed while it was being tagged; left for next time",
                        "changed")
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise _explain(path, e) from None
        raise


def remove_stale_temps(folder: Path) -> int:
    """Delete copies a killed writer left in ``folder``; returns how many."""
    removed = 0
    for entry in folder.glob(f".*{TEMP_SUFFIX}"):
        try:
            entry.unlink()
            removed += 1
        except OSError:
            pass
    return removed
