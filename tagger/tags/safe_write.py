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

Temporary copies are ``copy`` in a private folder ``.genre-tagger-XXXXXXXXXXXX.tmp`` (always 30
bytes, so any name that fits the file system can be tagged), locked with ``flock`` while their
writer lives: a copy whose lock can be taken belongs to a dead process and is removed, with its
folder, at once by the next walk.

Whoever can write the album folder can rename, replace or link anything in it at any instant,
also while a root service tags it. So after the folder is opened, no name is trusted again:
the folder is held by a descriptor (``O_DIRECTORY|O_NOFOLLOW``) and every name is looked up in
it without following links; the copy is made in a private folder of ours (mode 0700) that is
reached through its descriptor too, so mutagen, which opens files by name, opens only ours; it
is given the original's owner, mode, extended attributes (ACLs, SELinux labels) and times
through its own descriptor; the rename is relative to the two folders' descriptors, after
checking that the names still hold the files we opened, and what the rename put in place is
checked again. The worst a racing user gets is a "changed" refusal.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tagger.errors import NotUnderRoots, TagError
from tagger.faults import checkpoint
from tagger.tags.base import HardLinks

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


def _explain(path: Path, e: OSError) -> TagError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return TagError(path, "the disk is full; the file was left as it was", "disk-full")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TagError(path, f"not allowed to write here ({e.strerror})", "read-only")
    if e.errno == errno.ENOENT:
        return TagError(path, "the file vanished while being tagged", "missing")
    if e.errno in (errno.EAGAIN, errno.ENXIO):  # another's lease on it; a FIFO put in its place
        return TagError(path, "another program has the file open; left for later", "busy")
    return TagError(path, f"write failed: {e.strerror or e}", "write-error")


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


#: The copy's name inside its private folder.
COPY = "copy"


class Raced(OSError):
    """Someone renamed or replaced what we were making in the folder: a "changed" refusal."""


@dataclass(frozen=True)
class PrivateCopy:
    """A copy being made, in a folder of its own that only we may enter (and whose ``flock``
    says its writer lives)."""

    name: str  #: the private folder's name in the album folder
    dir_fd: int  #: the private folder
    fd: int  #: the copy, open for reading and writing

    @property
    def path(self) -> Path:
        """How mutagen and the checks reach the copy: through our descriptor of its folder,
        so no name anyone else can change is on the way."""
        return Path(f"/proc/self/fd/{self.dir_fd}/{COPY}")


@contextlib.contextmanager
def locked_temp(folder: Path | int) -> Iterator[PrivateCopy]:
    """A new private folder (mode 0700, ours, locked) in ``folder`` (a path, or a descriptor of
    it) holding an empty copy; both are removed on the way out unless the copy was renamed away.

    Why a folder: whoever can write the album folder can swap any name in it at any instant,
    and mutagen opens files by name. Inside a folder only we may enter, the copy's name is ours
    alone; the folder itself is reached through its descriptor, so swapping *its* name changes
    nothing either.
    """
    parent = folder if isinstance(folder, int) else os.open(
        folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        while True:
            name = f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}"
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
                break
            except FileExistsError:
                continue
        sub = -1
        try:
            try:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=parent)
            except OSError as e:  # moved, or swapped for a link, the instant it was made
                raise Raced(e.errno, "the new private folder was replaced") from None
            mine = os.fstat(sub)
            if (mine.st_uid != os.geteuid() or stat.S_IMODE(mine.st_mode) & 0o077) and not (
                    _owners_imposed(sub) and not os.listdir(sub)):
                # Swapped for someone else's folder between its making and its opening.
                raise Raced(errno.EEXIST, "the new private folder was replaced")
            fcntl.flock(sub, fcntl.LOCK_EX)
            copy = PrivateCopy(name, sub, os.open(
                COPY, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                dir_fd=sub))
            try:
                yield copy
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(COPY, dir_fd=sub)
                os.close(copy.fd)
        finally:
            with contextlib.suppress(OSError):
                if sub >= 0 and _same_file(os.stat(name, dir_fd=parent, follow_symlinks=False),
                                           os.fstat(sub)):
                    os.rmdir(name, dir_fd=parent)
            if sub >= 0:
                os.close(sub)
    finally:
        if not isinstance(folder, int):
            os.close(parent)


#: File systems whose owners and modes come from the mount or the server, not from us (NFS
#: with root_squash, SMB without unix extensions, FAT): a new folder there cannot look private.
_IMPOSED = ("nfs", "nfs4", "cifs", "smb3", "vfat", "msdos", "exfat", "fuseblk", "ntfs3")


def _owners_imposed(fd: int) -> bool:
    return filesystem_of(fd).split(" ")[0] in _IMPOSED


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def remove_if_stale(path: str, now: float | None = None) -> bool:
    """Remove a temporary copy whose writer is dead (its lock is free); True if removed.

    A copy lives in a private folder of the temporary name (files of that name are left by
    releases before 0.3). Everything is looked up relative to descriptors, and removed only
    while its name still holds what we examined: a name swapped meanwhile is left alone."""
    name = os.path.basename(path)
    if not (_TEMP.match(name) or _LEGACY_TEMP.match(name)):
        return False
    try:
        parent = open_folder(Path(os.path.realpath(os.path.dirname(path) or ".")))
    except OSError:
        return False
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        age = (now or time.time()) - st.st_ctime  # not mtime: copies carry the original's
        if stat.S_ISDIR(st.st_mode) and _TEMP.match(name):
            return _remove_private(parent, name, st, age)
        if not stat.S_ISREG(st.st_mode):
            return False
        if _LEGACY_TEMP.match(name):
            if age > LEGACY_STALE_SECONDS:
                os.unlink(name, dir_fd=parent)
                return True
            return False
        return age >= YOUNG_SECONDS and _remove_unlocked(parent, name)
    except OSError:
        return False
    finally:
        os.close(parent)


def _remove_unlocked(dir_fd: int, name: str) -> bool:
    """Remove ``name`` in ``dir_fd`` if no live writer holds its lock (and it is still it)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _same_file(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), os.fstat(fd)):
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True
    except OSError:
        return False  # a live writer holds it, or it went
    finally:
        os.close(fd)


def _remove_private(parent: int, name: str, st: os.stat_result, age: float) -> bool:
    """A dead writer's private folder (its lock is free): its copy, then the folder."""
    if age < YOUNG_SECONDS:  # made a moment ago: its writer locks it next
        return False
    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        if not _same_file(os.fstat(sub), st):
            return False
        try:
            fcntl.flock(sub, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live writer holds it
        with contextlib.suppress(FileNotFoundError):
            os.unlink(COPY, dir_fd=sub)
        os.rmdir(name, dir_fd=parent)
        return True
    finally:
        os.close(sub)


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


def quiet_lease_breaks() -> None:
    """SIGIO ignored from now on, where it can be (signal handlers belong to the main thread;
    the page calls it there before its worker threads write)."""
    # A lease break is signalled with SIGIO, whose default action ends the process. We clear the
    # descriptor's owner right after taking a lease (no signal at all); this covers the instant
    # in between.
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGIO) == signal.SIG_DFL:
        signal.signal(signal.SIGIO, signal.SIG_IGN)


@contextlib.contextmanager
def no_writers(path: Path, dir_fd: int | None = None) -> Iterator[os.stat_result]:
    """Hold ``path`` (a name in ``dir_fd``, not followed if a link, when given) while no process
    has it open for writing; yields its stat, taken inside.

    Raises ``TagError(code="busy")`` when someone is writing it.
    """
    busy = TagError(path, "another program is still writing the file; left for later", "busy")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(path, flags) if dir_fd is None else os.open(
        path.name, flags | os.O_NOFOLLOW, dir_fd=dir_fd)
    leased = False
    try:
        quiet_lease_breaks()
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
    except TagError:
        return True
    except OSError:
        return False


# --- the replacement -----------------------------------------------------------------------------


#: Errors of a file system that keeps no owners or modes (FAT, exFAT, many FUSE drivers).
_NO_MODES = (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP)


def inside(real: str, roots: tuple[str, ...]) -> bool:
    """Is the real path ``real`` one of the real folders ``roots`` or under one? (Whole names:
    ``/x/music2`` is not under ``/x/music``.)"""
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def open_under(path: str, real: tuple[str, ...] | None) -> int:
    """A read-only descriptor of ``path`` if it is a regular file whose real location is under
    the ``real`` roots (resolved now; None: anywhere); else
    :class:`~tagger.errors.NotUnderRoots`, or the OSError that stopped it (FileNotFoundError...).

    Found first without opening it (``O_PATH``: a device or a FIFO is never opened, and what
    is checked is what was found), then that very file opened through its descriptor: a
    folder on the way swapped for a link after the check changes nothing, so whoever reads
    the descriptor (the page's audio, its tag reads, a correction's look before writing)
    reads the file that was checked."""
    found = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        where = os.readlink(f"/proc/self/fd/{found}")
        if not stat.S_ISREG(os.fstat(found).st_mode):
            raise NotUnderRoots(path, "not a regular file", "not-a-file")
        if real is not None and not inside(where, real):
            raise NotUnderRoots(path, "its real location is outside the library roots",
                                "outside-roots")
        return os.open(f"/proc/self/fd/{found}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    finally:
        os.close(found)


def open_folder(real: Path) -> int:
    """A descriptor of the folder whose real path (absolute, links resolved) is ``real``,
    opened one name at a time from ``/`` without following any link.

    ``open(real, O_NOFOLLOW)`` refuses a link only in the last name: a user who can write any
    folder on the way could swap it for a link after the path was resolved and checked against
    the roots, and a root writer would follow it out of the library. Here any link on the way
    is refused (ELOOP or ENOTDIR: "changed"). The folders on the way are opened ``O_PATH``
    (search permission is all a lookup needs, as for the path itself).
    """
    flags = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in real.parts[1:]:
            nxt = os.open(name, os.O_PATH | flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
        folder = os.open(".", os.O_RDONLY | flags, dir_fd=fd)
    finally:
        os.close(fd)
    return folder


def replace_atomically(path: Path, edit: Callable[[Path], None], keep_mtime: bool = False,
                       expect: os.stat_result | None = None,
                       hard_links: HardLinks = "leave",
                       roots: tuple[str, ...] | None = None) -> os.stat_result:
    """Copy ``path``, let ``edit`` change (and verify) the copy, then put it in place atomically.

    ``edit`` gets a path to the copy that goes through our descriptor of its private folder
    (:class:`PrivateCopy`). A symlink is
    written through (the link stays a link). ``expect`` is the file's stat when it was analysed:
    if the file differs from it now, nothing is written (code ``changed``). Owner, mode, every
    extended attribute this process may read and set (user.*, trusted.* as root, ACLs, SELinux
    labels) and, with ``keep_mtime``, the times are carried over; a file whose attributes
    cannot be is refused. A file or folder without write permission is refused even for root:
    it is the owner's intent. ``roots`` (real paths): the file's real location must lie inside
    one, checked on the very path whose folder is then opened. Returns the stat of the file now
    in place.
    """
    path = Path(path)
    try:
        real = Path(os.path.realpath(path))
    except OSError:  # a folder on the way was swapped between realpath's lstat and readlink
        raise (_changed(path) if os.path.lexists(path) else
               TagError(path, "no such file", "missing")) from None
    if roots is not None and not inside(str(real), roots):
        raise TagError(path, "its real location is outside the library roots; not written",
                            "outside-roots")
    try:
        dir_fd = open_folder(real.parent)
    except FileNotFoundError:
        raise TagError(path, "no such file", "missing") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # its folder became a link since
            raise _changed(path) from None
        raise _explain(path, e) from None
    try:
        return _replace_in(dir_fd, real, path, edit, keep_mtime, expect, hard_links)
    except Raced:
        raise _changed(path) from None
    except OSError as e:
        if e.errno == errno.ELOOP:  # the file became a link since we looked: not followed
            raise _changed(path) from None
        raise _explain(path, e) from None
    finally:
        os.close(dir_fd)


def _changed(path: Path) -> TagError:
    return TagError(path, "the file changed while it was being tagged; left for next time",
                         "changed")


def _replace_in(dir_fd: int, real: Path, path: Path, edit: Callable[[Path], None],
                keep_mtime: bool, expect: os.stat_result | None,
                hard_links: HardLinks) -> os.stat_result:
    name = real.name
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise TagError(path, "no such file", "missing") from None
    if stat.S_ISLNK(st.st_mode):
        raise _changed(path)  # it was a file when its link was resolved
    if not stat.S_ISREG(st.st_mode):
        raise TagError(path, "not a regular file", "not-a-file")
    if expect is not None and changed_since(expect, st):
        raise _changed(path)
    if st.st_nlink > 1 and hard_links == "leave":
        raise TagError(path, f"hard-linked ({st.st_nlink} names): writing would split it; "
                                  "left as it was (the hard_links setting)", "hard-linked")
    if not _writable_bits(st.st_mode) or not os.access(name, os.W_OK, dir_fd=dir_fd):
        raise TagError(path, "the file is read-only", "read-only")
    if not _writable_bits(os.fstat(dir_fd).st_mode) or not os.access(
            ".", os.W_OK | os.X_OK, dir_fd=dir_fd):
        raise TagError(path, "its folder is read-only (a new copy cannot be written there)",
                            "read-only")
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if _fingerprint(os.fstat(src)) != _fingerprint(st):
            raise _changed(path)
        with locked_temp(dir_fd) as copy:
            fd = copy.fd
            _copy(src, fd)
            edit(copy.path)
            _carry_over(src, fd, st, path)
            if keep_mtime:
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.fsync(fd)  # the bytes and what was carried over, before the name points at them
            new = os.fstat(fd)
            checkpoint("after-temp-write")
            if st.st_nlink > 1 and hard_links == "in-place":
                return _write_back(dir_fd, name, fd, st, path, keep_mtime)
            with no_writers(Path(name), dir_fd) as now:
                if _fingerprint(now) != _fingerprint(st):
                    raise _changed(path)
                if not _same_file(os.stat(real.parent), os.fstat(dir_fd)):
                    raise _changed(path)  # the folder was moved or replaced meanwhile
                os.replace(COPY, name, src_dir_fd=copy.dir_fd, dst_dir_fd=dir_fd)
            checkpoint("after-rename")
            if not _same_file(os.stat(name, dir_fd=dir_fd, follow_symlinks=False), new):
                # Someone swapped the names in the instant between the check and the rename:
                # what is there now is theirs, and our copy went where they put it.
                raise _changed(path)
        _fsync_folder(dir_fd)
        return new
    finally:
        os.close(src)


def _fsync_folder(dir_fd: int) -> None:
    """Make the rename durable; a file system that cannot sync a folder (some FUSE drivers:
    EINVAL, ENOSYS) has nothing more to offer, and the rename itself is done."""
    try:
        os.fsync(dir_fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise


def _copy(src: int, dst: int) -> None:
    os.lseek(src, 0, os.SEEK_SET)
    while chunk := os.read(src, 1 << 20):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]
    os.lseek(dst, 0, os.SEEK_SET)


def _carry_over(src: int, dst: int, st: os.stat_result, path: Path) -> None:
    """The original's owner, extended attributes and mode onto the copy, through descriptors.

    In that order: a change of owner drops file capabilities and set-id bits, and an access
    ACL and the mode share the group bits. A file system that keeps no owners or modes (FAT,
    exFAT, many FUSE drivers: EPERM or ENOSYS) is fine when the copy already has the original's;
    otherwise the file is refused, naming the file system, and no retry can help.
    """
    now = os.fstat(dst)
    if (st.st_uid, st.st_gid) != (now.st_uid, now.st_gid):
        try:
            os.fchown(dst, st.st_uid, st.st_gid)
        except OSError as e:
            if e.errno not in _NO_MODES:
                raise
            if os.geteuid() == 0:
                raise _no_modes(path, dst, "owners") from None
            # Not root: the copy stays ours, which only matters on shared folders.
    _carry_xattrs(src, dst, path)
    if stat.S_IMODE(os.fstat(dst).st_mode) != stat.S_IMODE(st.st_mode):
        try:
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
        except OSError as e:
            if e.errno not in _NO_MODES:
                raise
            raise _no_modes(path, dst, "modes") from None


def _no_modes(path: Path, fd: int, what: str) -> TagError:
    return TagError(path, f"the file system here ({filesystem_of(fd)}) keeps no file {what}, "
                               "so the rewritten file could not keep the original's; left as it was",
                         "filesystem")


def filesystem_of(fd: int) -> str:
    """The type and mount point of the file system holding ``fd`` (from /proc/self/mountinfo)."""
    dev = os.fstat(fd).st_dev
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8",
                                            errors="replace") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and fields[2] == f"{os.major(dev)}:{os.minor(dev)}":
                return f"{right.split()[0]} at {fields[4]}"
    return "unknown"


def _carry_xattrs(src: int, dst: int, path: Path) -> None:
    """Every extended attribute the original has that this process can read, set on the copy
    (``cp --preserve=all``'s rule), and none it lacks (a folder's default ACL or a policy may
    have given the new file some): the copy's attributes end equal to the original's."""
    try:
        want = {name: os.getxattr(src, name) for name in os.listxattr(src)}
        have = set(os.listxattr(dst))
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return  # a file system without extended attributes: nothing to carry
        raise TagError(path, f"its extended attributes cannot be read ({e.strerror}); left as "
                                  "it was", "xattrs") from None
    for name, value in want.items():
        try:
            if name not in have or os.getxattr(dst, name) != value:
                os.setxattr(dst, name, value)
        except OSError as e:
            raise TagError(path, f"its extended attribute {name} cannot be carried over to "
                                      f"the rewritten file ({e.strerror}); left as it was",
                                "xattrs") from None
    for name in have - set(want):
        try:
            os.removexattr(dst, name)
        except OSError as e:
            raise TagError(path, f"the rewritten file got an extended attribute ({name}) the "
                                      f"original lacks and it cannot be removed ({e.strerror}); "
                                      "left as it was", "xattrs") from None


def _write_back(dir_fd: int, name: str, tmp: int, st: os.stat_result, path: Path,
                keep_mtime: bool) -> os.stat_result:
    """``hard_links = "in-place"``: the verified copy's bytes written over the original inode,
    so every name sees them. Not atomic: a crash in the copy back can leave the file damaged."""
    # O_NONBLOCK: a FIFO swapped in under the name would otherwise hang the open (then the
    # fingerprint says it is not the file we looked at).
    dst = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if _fingerprint(os.fstat(dst)) != _fingerprint(st):
            raise _changed(path)
        if _writers_in_proc(st):  # ours is the only writer it may have
            raise TagError(path, "another program is still writing the file; left for later",
                                "busy")
        _copy(tmp, dst)
        os.ftruncate(dst, os.fstat(tmp).st_size)
        if keep_mtime:
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.fsync(dst)
        return os.fstat(dst)
    finally:
        os.close(dst)


__all__ = ["being_written", "changed_since", "filesystem_of", "inside", "is_temp_name",
           "locked_temp", "no_writers", "open_folder", "remove_if_stale", "replace_atomically"]
