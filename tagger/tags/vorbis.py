"""Vorbis comments (FLAC, Ogg Vorbis, Opus): one GENRE field per genre."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagger.tags.api import TagOptions


def read(f: Any, options: TagOptions) -> list[str]:
    if f.tags is None:
        return []
    return [g for g in f.tags.get("genre", []) if g]


def write(f: Any, genres: list[str], options: TagOptions) -> None:
    if f.tags is None:
        f.add_tags()
    if genres:
        f.tags["genre"] = genres
    elif "genre" in f.tags:
        del f.tags["genre"]
    f.save()
