"""ASF (WMA): one ``WM/Genre`` attribute per genre."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagger.tags.api import TagOptions

KEY = "WM/Genre"


def read(f: Any, options: TagOptions) -> list[str]:
    if f.tags is None:
        return []
    return [str(v) for v in f.tags.get(KEY, []) if str(v)]


def write(f: Any, genres: list[str], options: TagOptions) -> None:
    if f.tags is None:
        f.add_tags()
    if genres:
        f.tags[KEY] = list(genres)
    elif KEY in f.tags:
        del f.tags[KEY]
    f.save()
