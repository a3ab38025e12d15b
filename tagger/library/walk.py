"""Find the audio files under library roots, and keep writes inside them.

Hidden files and folders are skipped (they hold players' caches, trash and our own temporary
copies). Symlinked folders are followed once each: a (device, inode) set breaks loops. A file
whose real location lies outside every root is still analysed but never written to.

Every command that looks for audio in folders (``predict``, ``scan``, the daemon) walks with
:func:`walk`, so they all find the same files. Folders that cannot be read are reported to the
caller (``on_error``), never silently taken for empty ones.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tagger.formats.kinds import LIBRARY_EXTENSIONS
from tagger.tags.safe_write import inside, is_temp_name, remove_if_stale

#: ``on_error(path, error)``: a folder (or an entry in one) that could not be read.
OnError = Callable[[str, OSError], None]


def is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in LIBRARY_EXTENSIONS


def real_roots(roots: Iterable[str | Path]) -> tuple[str, ...]:
    return tuple(os.path.realpath(r) for r in roots)


def within(path: str | Path, roots: tuple[str, ...]) -> bool:
    """Does ``path``'s real location (symlinks resolved) lie inside one of ``roots``?

    A folder on the way swapped between realpath's lstat and readlink raises there; such a
    path is not known to be inside."""
    try:
        return inside(os.path.realpath(path), roots)
    except OSError:
        return False


def unreadable_reason(path: str, e: OSError) -> str:
    """What a person reads about a path :func:`walk` passed to ``on_error``: plain words, the
    same in every command."""
    if e.errno in (errno.EACCES, errno.EPERM):
        why = "permission denied"
    elif e.errno == errno.ENOENT:
        why = "no such file or folder"
    else:
        why = (e.strerror or str(e)).lower()
    if os.path.isdir(path):
        return f"cannot read this folder: {why}; its files were skipped"
    return f"cannot read this file: {why}; skipped"


def walk(roots: Iterable[str | Path], clean_temps: bool = True,
         on_error: OnError | None = None) -> Iterator[tuple[str, os.stat_result]]:
    """``(path, stat)`` of every audio file under ``roots``, in a stable order.

    A folder that cannot be listed (or an audio file or sub-folder that cannot be examined) is
    passed to ``on_error`` and skipped, so callers can tell "unreadable" from "no music here".
    """
    seen: set[tuple[int, int]] = set()
    now = time.time()
    for root in roots:
        top = os.path.abspath(root)
        stack = [top]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as e:
                if on_error and (e.errno != errno.ENOENT or folder == top):  # vanished meanwhile: no loss
                    on_error(folder, e)
                continue  # unreadable or vanished folder: nothing more to find there
            subdirs = []
            for entry in entries:
                if entry.name.startswith("."):
                    if clean_temps and is_temp_name(entry.name):
                        remove_if_stale(entry.path, now)
                    continue
                try:
                    if entry.is_dir():  # follows symlinks; loops are caught by `seen`
                        subdirs.append(entry.path)
                        continue
                    if not (is_audio_name(entry.name) and entry.is_file()):
                        continue
                    file_stat = entry.stat()
                except OSError as e:  # e.g. a folder we may list but not search (mode r--)
                    if on_error and e.errno != errno.ENOENT:  # vanished meanwhile: nothing lost
                        on_error(entry.path, e)
                    continue
                yield entry.path, file_stat
            stack.extend(reversed(subdirs))
