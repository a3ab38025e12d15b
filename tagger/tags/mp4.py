"""MP4/M4A (AAC, ALAC): one ``©gen`` atom with one data atom per genre.

mutagen reads a legacy numeric ``gnre`` atom into ``©gen`` and never writes ``gnre`` back, so a
write leaves the modern form only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from tagger.tags.base import TagOptions

KEY = "\xa9gen"
GENRE_KEYS = (KEY, "gnre")


#: Where the album and the album artist are (``scan --album`` groups by them).
ALBUM_KEYS = ("\xa9alb", "aART")

def read(f: Any, options: TagOptions) -> list[str]:
    if f.tags is None:
        return []
    return [g for g in f.tags.get(KEY, []) if g]


def write(f: Any, genres: list[str], options: TagOptions, into: BinaryIO | None = None) -> None:
    if f.tags is None:
        f.add_tags()
    if genres:
        f.tags[KEY] = genres
    elif KEY in f.tags:
        del f.tags[KEY]
    f.save(into)


def others(f: Any) -> list[tuple[str, str]]:
    if f.tags is None:
        return []
    return sorted((k, repr(v)) for k, v in f.tags.items() if k not in GENRE_KEYS)


def problem(path: Path, f: Any) -> str | None:
    """Items mutagen cannot parse are written back re-serialised: not faithful, so refused."""
    failed = [k for k in getattr(f.tags, "_failed_atoms", {}) if k not in GENRE_KEYS]
    if failed:
        return f"the MP4 metadata item {failed[0]!r} is damaged and would be rewritten"
    return None
