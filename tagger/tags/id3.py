"""ID3v2 (MP3, and the ID3 chunk of WAV and AIFF): one TCON frame holding every genre.

ID3v2.4 stores several values NUL-separated in one frame, which Navidrome, Jellyfin, MPD and
foobar2000 read as separate genres. ID3v2.3 has no multi-value text, so there the values are
joined with a configurable separator. Never several TCON frames: most readers use the first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mutagen.id3 import TCON, ID3v1SaveOptions
from mutagen.mp3 import MP3
from mutagen.wave import WAVE

from tagger.tags.riff_info import set_info_genre

if TYPE_CHECKING:
    from tagger.tags.api import TagOptions


def read(f: Any, options: TagOptions) -> list[str]:
    if f.tags is None:
        return []
    genres: list[str] = []
    for frame in f.tags.getall("TCON"):
        for g in frame.genres:  # .genres decodes "(17)"-style references
            if f.tags.version[:2] == (2, 3) and options.id3v23_separator.strip():
                genres.extend(p.strip() for p in g.split(options.id3v23_separator.strip()))
            else:
                genres.append(g)
    return [g for g in genres if g]


def _id3v1_block(path: str) -> bytes | None:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() < 128:
            return None
        fh.seek(-128, os.SEEK_END)
        block = fh.read(128)
    return block if block[:3] == b"TAG" else None


def _v1_genre_byte(genres: list[str]) -> int:
    names = [g.casefold() for g in TCON.GENRES]
    first = genres[0].casefold() if genres else ""
    return names.index(first) if first in names else 255  # 255: no ID3v1 genre


def write(f: Any, genres: list[str], options: TagOptions) -> None:
    """Write TCON; an ID3v1 tag, if any, keeps every byte but its genre.

    ``f`` must be opened without merging ID3v1 into the v2 tag (mutagen would otherwise write
    the merged v1 fields back as new v2 frames).
    """
    if f.tags is None:
        f.add_tags()
    version = options.id3_version or (3 if f.tags.version[:2] == (2, 3) else 4)
    if genres:
        # encoding 3 = UTF-8; .text (not .genres) so "Rock" is never turned into a number.
        f.tags.setall("TCON", [TCON(encoding=3, text=genres)])
    else:
        f.tags.delall("TCON")
    filename = str(f.filename)
    v1 = _id3v1_block(filename) if isinstance(f, MP3) else None
    kwargs: dict[str, Any] = {"v2_version": version}
    if version == 3:
        kwargs["v23_sep"] = options.id3v23_separator
    if isinstance(f, MP3):
        kwargs["v1"] = ID3v1SaveOptions.REMOVE if v1 else ID3v1SaveOptions.UPDATE
    f.save(**kwargs)
    if v1:
        with open(filename, "ab") as fh:
            fh.write(v1[:127] + bytes([_v1_genre_byte(genres)]))
    if isinstance(f, WAVE):
        set_info_genre(Path(filename), options.id3v23_separator.join(genres) or None)
