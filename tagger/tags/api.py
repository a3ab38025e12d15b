"""The dispatcher: pick the format module for a file, read or (safely) write its genres."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import mutagen
from mutagen.aiff import AIFF
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from tagger.errors import TaggerError
from tagger.tags import asf, id3, mp4, vorbis


class TagWriteError(TaggerError):
    """A file's tags could not be read or written; the file is left as it was."""

    def __init__(self, path: str | Path, reason: str, code: str = "tag-error") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class TagOptions:
    #: ID3 version for MP3/WAV/AIFF: None keeps the file's own (v2.4 for untagged files).
    id3_version: int | None = None
    #: How ID3v2.3 joins several genres in its single text frame (Picard recommends "; ").
    id3v23_separator: str = "; "
    #: Keep the file's modification time, so our write does not look like a new file to others.
    keep_mtime: bool = True


class FormatModule(Protocol):
    def read(self, f: Any, options: TagOptions) -> list[str]: ...
    def write(self, f: Any, genres: list[str], options: TagOptions) -> None: ...


def _module(f: Any) -> FormatModule:
    if isinstance(f, (MP3, WAVE, AIFF)):
        return id3
    if isinstance(f, (FLAC, OggVorbis, OggOpus)):
        return vorbis
    if isinstance(f, MP4):
        return mp4
    if isinstance(f, ASF):
        return asf
    raise TagWriteError(getattr(f, "filename", "?"), f"no genre support for {type(f).__name__} files",
                        "unsupported-format")


def _open(path: Path, for_write: bool = False) -> Any:
    try:
        f = mutagen.File(path)
        if for_write and isinstance(f, MP3):
            f = MP3(path, load_v1=False)  # see tagger.tags.id3.write
    except mutagen.MutagenError as e:
        cause = e.args[0] if e.args else e
        if isinstance(cause, FileNotFoundError):
            raise TagWriteError(path, "no such file", "missing") from None
        if isinstance(cause, PermissionError):
            raise TagWriteError(path, "permission denied", "permission") from None
        raise TagWriteError(path, f"cannot read its tags: {e}", "bad-tags") from None
    except FileNotFoundError:
        raise TagWriteError(path, "no such file", "missing") from None
    except PermissionError:
        raise TagWriteError(path, "permission denied", "permission") from None
    if f is None:
        raise TagWriteError(path, "not a tagged audio format mutagen knows", "unsupported-format")
    return f


def read_genres(path: str | Path, options: TagOptions | None = None) -> list[str]:
    """The genres the file has now, in its own order ([] when none).

    ID3v2.3 frames are split on ``options.id3v23_separator``: what we joined on write.
    """
    f = _open(Path(path))
    return _module(f).read(f, options or TagOptions())


def write_genres(path: str | Path, genres: list[str], options: TagOptions | None = None) -> None:
    """Replace the file's genres with ``genres`` ([] removes them), crash-safely."""
    from tagger.tags.safe_write import replace_atomically

    options = options or TagOptions()
    path = Path(path)
    module = _module(_open(path))

    def edit(tmp: Path) -> None:
        f = _open(tmp, for_write=True)
        module.write(f, list(genres), options)

    replace_atomically(path, edit, keep_mtime=options.keep_mtime)
