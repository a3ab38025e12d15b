"""Find the audio files under library roots, and keep writes inside them.

Hidden files and folders are skipped (they hold players' caches, trash and our own temporary
copies). Symlinked folders are followed once each: a (device, inode) set breaks loops. A file
whose real location lies outside every root is still analysed but never written to.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from tagger.tags.safe_write import TEMP_SUFFIX

AUDIO_EXTENSIONS = frozenset({".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".m4b",
                              ".aac", ".wav", ".aif", ".aiff", ".aifc", ".wma", ".asf"})
#: A temporary copy older than this was left by a killed writer, not one still writing.
STALE_TEMP_SECONDS = 600


def is_audio_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def real_roots(roots: Iterable[str | Path]) -> tuple[str, ...]:
    return tuple(os.path.realpath(r) for r in roots)


def within(path: str | Path, roots: tuple[str, ...]) -> bool:
    """Does ``path``'s real location (symlinks resolved) lie inside one of ``roots``?"""
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def walk(roots: Iterable[str | Path], clean_temps: bool = True) -> Iterator[tuple[str, os.stat_result]]:
    """``(path, stat)`` of every audio file under ``roots``, in a stable order."""
    seen: set[tuple[int, int]] = set()
    now = time.time()
    for root in roots:
        stack = [os.path.abspath(root)]
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue  # unreadable or vanished folder: nothing to find there
            subdirs = []
            for entry in entries:
                if entry.name.startswith("."):
                    if clean_temps and entry.name.endswith(TEMP_SUFFIX):
                        _remove_if_stale(entry, now)
                    continue
                try:
                    if entry.is_dir():  # follows symlinks; loops are caught by `seen`
                        subdirs.append(entry.path)
                    elif is_audio_name(entry.name) and entry.is_file():
                        yield entry.path, entry.stat()
                except OSError:
                    continue
            stack.extend(reversed(subdirs))


def _remove_if_stale(entry: os.DirEntry[str], now: float) -> None:
    try:
        if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS:
            os.unlink(entry.path)
    except OSError:
        pass
