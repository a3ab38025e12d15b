"""Read and write the genres inside audio files: one module per tag format, one small API.

``read_genres(path)`` and ``write_genres(path, genres, options)`` dispatch on what mutagen
finds in the file, like mutagen itself: ID3 (MP3, WAV, AIFF), Vorbis comments (FLAC, Ogg Vorbis,
Opus), MP4 atoms (M4A/ALAC) and ASF attributes (WMA). Genres are written as real multi-values,
most confident first; nothing but the genre changes. Writes go through :mod:`.safe_write`, so a
crash at any moment leaves the file either as it was or wholly updated.
"""

from tagger.errors import TagError
from tagger.tags.api import genres_or_reason, held_open, read_album, read_genres, write_genres
from tagger.tags.base import TagOptions

__all__ = ["TagError", "TagOptions", "genres_or_reason", "held_open", "read_album", "read_genres",
           "write_genres"]
