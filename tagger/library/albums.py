"""Which album a file belongs to, for one genre set per album (``scan --album``, the daemon's
``album = true``): its album and album artist tags, else its folder.

Tracks with the same album and album artist are one album wherever they lie (CD1/ and CD2/);
an album tag without an album artist is only trusted within one folder (two artists' "Greatest
Hits" are not one album); a file without an album tag is grouped with its folder.
"""

from __future__ import annotations

import os

from tagger.analysis.vocabulary import name_key
from tagger.errors import TagError
from tagger.tags import read_album

#: Album artists that name no one: their albums count within a folder, like untagged ones
#: (every "Greatest Hits" by "Various Artists" is not one album).
VARIOUS = frozenset({"various artists", "various", "va", "v.a.", "v/a", "compilation"})


def album_key(path: str, album: str, album_artist: str) -> str:
    """The grouping key from the tags as read (pure)."""
    folder = os.path.dirname(path)
    if album and album_artist and name_key(album_artist) not in VARIOUS:
        return f"tags:{name_key(album_artist)}\x1f{name_key(album)}"
    if album:
        return f"folder:{folder}\x1f{name_key(album)}"
    return f"folder:{folder}"


def describe(key: str) -> str:
    """An album key in words, with why these files are one album (pure)."""
    kind, _, rest = key.partition(":")
    parts = rest.split("\x1f")
    if kind == "tags" and len(parts) == 2:
        return f"'{parts[1]}' by '{parts[0]}' (album and album artist tags, wherever its files lie)"
    if len(parts) == 2:
        return f"'{parts[1]}' in {parts[0]} (album tag without an album artist: within its folder)"
    return f"the folder {rest} (no album tag)"


def album_of(path: str) -> str:
    """The key of the file at ``path``; a file whose tags cannot be read goes with its folder."""
    try:
        album, artist = read_album(path)
    except (TagError, OSError):
        album = artist = ""
    return album_key(path, album, artist)


__all__ = ["album_key", "album_of", "describe"]
