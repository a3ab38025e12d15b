"""ASF (WMA): one ``WM/Genre`` attribute per genre."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from tagger.tags.base import TagOptions

KEY = "WM/Genre"
GENRE_KEYS = (KEY, "WM/GenreID")


#: Where the album and the album artist are (``scan --album`` groups by them).
ALBUM_KEYS = ("WM/AlbumTitle", "WM/AlbumArtist")

def read(f: Any, options: TagOptions) -> list[str]:
    if f.tags is None:
        return []
    return [str(v) for v in f.tags.get(KEY, []) if str(v)]


def write(f: Any, genres: list[str], options: TagOptions, into: BinaryIO | None = None) -> None:
    if f.tags is None:
        f.add_tags()
    if genres:
        f.tags[KEY] = list(genres)
    elif KEY in f.tags:
        del f.tags[KEY]
    f.save(into)


def others(f: Any) -> list[tuple[str, str]]:
    if f.tags is None:
        return []
    return sorted((k, repr(v)) for k, v in f.tags.items() if k not in GENRE_KEYS)


def problem(path: Path, f: Any) -> str | None:
    return None
