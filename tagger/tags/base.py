"""What every tag format shares: the options, the error, and the small API a format module
implements. Format modules import this; it imports none of them (mutagen's own layout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

from tagger.errors import TagError

#: The prefix of every "we refused to rewrite this file" reason.
UNSAFE = "cannot safely rewrite the tags: "


def unsafe(path: str | Path, why: str) -> TagError:
    return TagError(path, UNSAFE + why, "unsafe-rewrite")


#: A file with several names (hard links; the *arr way: a torrent's seed and the library):
#: ``leave`` it as it is (the default), ``split`` it (this name gets the new file, the others keep
#: the old bytes, and the disk holds both), or write ``in-place`` (every name sees the change;
#: a crash during the few milliseconds of the copy back can leave the file damaged).
HardLinks = Literal["leave", "split", "in-place"]
HARD_LINKS: tuple[HardLinks, ...] = ("leave", "split", "in-place")


@dataclass(frozen=True)
class TagOptions:
    #: ID3 version for MP3/WAV/AIFF: None keeps the file's own (v2.4 for untagged files).
    id3_version: int | None = None
    #: How ID3v2.3 joins several genres in its single text frame (Picard recommends "; ").
    id3v23_separator: str = "; "
    #: Keep the file's modification time. Off by default: Navidrome, Jellyfin, Plex and beets'
    #: ``update`` re-read a file only when its mtime moves, so with it kept they never see the
    #: genres. On for people who sort by mtime as "date added".
    keep_mtime: bool = False
    #: A file with several names: :data:`HardLinks`.
    hard_links: HardLinks = "leave"


class FormatModule(Protocol):
    #: The album's and the album artist's keys in this format.
    ALBUM_KEYS: tuple[str, str]

    def read(self, f: Any, options: TagOptions) -> list[str]:
        """The genres, in the file's own order."""

    def write(self, f: Any, genres: list[str], options: TagOptions,
              into: BinaryIO | None = None) -> None:
        """Replace the genres (``f`` is a copy; the caller renames it into place), saving
        through ``into`` (the copy opened for writing) when given."""

    def others(self, f: Any) -> list[tuple[str, str]]:
        """Everything but the genre, comparably: equal before and after a write, or the write
        changed something it must not."""

    def problem(self, path: Path, f: Any) -> str | None:
        """Why this file's tags cannot be rewritten faithfully (None: they can)."""
