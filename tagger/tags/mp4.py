"""MP4/M4A (AAC, ALAC): one ``©gen`` atom with one data atom per genre.

mutagen reads a legacy numeric ``gnre`` atom into ``©gen`` and never writes ``gnre`` back, so a
write leaves the modern form only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagger.tags.api import TagOptions

KEY = "\xa9gen"


def read(f: Any, options: TagOptions) -> list[str]:
    if f.tags is None:
        return []
    return [g for g in f.tags.get(KEY, []) if g]


def write(f: Any, genres: list[str], options: TagOptions) -> None:
    if f.tags is None:
        f.add_tags()
    if genres:
        f.tags[KEY] = genres
    elif KEY in f.tags:
        del f.tags[KEY]
    f.save()
