"""What a file declares, read without decoding: that it can be opened at all, its kind from its
first bytes, the length its headers give, and whether an Ogg file is cut."""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tagger.errors import EmptyAudio, NotAudio, TruncatedAudio, os_errors
from tagger.formats.kinds import mutagen_types
from tagger.formats.sniff import sniff

_NOT_REGULAR = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_readable(path: Path) -> None:
    """Raise the precise error for a file we cannot even open.

    ``os.stat`` (which follows symlinks) comes before any ``open``: opening a FIFO blocks until a
    writer comes, and a symlink to ``/dev/zero`` never ends.
    """
    with os_errors(path, "reach"):
        st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):
        raise NotAudio(path, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        what = next((name for test, name in _NOT_REGULAR if test(st.st_mode)), "a special file")
        via = " (through a symlink)" if os.path.islink(path) else ""
        raise NotAudio(path, f"not a regular file: it is {what}{via}, not audio")
    with os_errors(path, "read"), open(path, "rb") as fh:
        first = fh.read(1)
    if not first:
        raise EmptyAudio(path, "the file is empty (0 bytes)")


# --- what the file declares (headers only) --------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What a file's headers say, read without decoding."""

    kind: str | None  # from the first bytes (see :func:`sniff`); None: no audio format we know
    declared: float | None  # seconds the container declares
    exact: bool  # whether ``declared`` is exact enough to judge truncation by


def _mutagen_length(path: Path, kind: str | None) -> tuple[float | None, bool]:
    """The length the headers declare (mutagen decodes nothing), and whether it is exact."""
    import mutagen
    from mutagen.aac import AAC
    from mutagen.mp3 import MP3, BitrateMode

    # The content decides the parser, not the name: a FLAC called .mp3 has a FLAC's length.
    options = mutagen_types(kind or "")
    f = mutagen.File(path, options=options) if options else mutagen.File(path)
    length = float(getattr(f.info, "length", 0) or 0) if f is not None else 0.0
    if not (0 < length < math.inf):  # absent, zero, NaN or infinite: unknown
        return None, False
    # MP3 without a Xing/VBRI/LAME header and ADTS AAC only estimate their length from bitrates.
    estimated = isinstance(f, AAC) or (
        isinstance(f, MP3) and getattr(f.info, "bitrate_mode", None) == BitrateMode.UNKNOWN)
    return length, not estimated


def _ogg_ending(path: Path) -> str | None:
    """How an Ogg file ends: ``"cut"`` mid-page, ``"no-eos"`` without the end-of-stream flag.

    Ogg declares no length up front, and mutagen's comes from the last page it finds, so a cut
    file looks complete. Walks the page headers (27 bytes + segment table each, no payload) from
    the start; None when the file ends properly or holds something else after its pages (an
    appended tag: then nothing can be said).
    """
    with os_errors(path, "read"), open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        pos, flags = 0, 0
        while pos < size:
            fh.seek(pos)
            head = fh.read(27 + 255)
            if len(head) < 27:
                return "cut" if b"OggS".startswith(head[:4]) else None
            if head[:4] != b"OggS" or head[4] != 0:
                return None
            n = head[26]
            if len(head) < 27 + n:
                return "cut"
            flags = head[5]
            pos += 27 + n + sum(head[27:27 + n])
        if pos > size:
            return "cut"
        return None if flags & 0x04 else "no-eos"


def probe(path: str | Path) -> Probe:
    """Read what the headers say; a cut Ogg file raises :class:`TruncatedAudio` here already."""
    path = Path(path)
    check_readable(path)
    kind = sniff(path)
    try:
        declared, exact = _mutagen_length(path, kind)
    except Exception:  # mutagen's errors (even Python's own) only mean the length is unknown
        declared, exact = None, False
    if kind == "Ogg":
        ending = _ogg_ending(path)
        stops = f"its audio stops after {declared:.1f} s" if declared else "it stops before any audio"
        if ending == "cut":
            raise TruncatedAudio(path, f"the file is truncated: {stops}, part-way through a block of "
                                       "data (the last Ogg page is cut short)")
        if ending == "no-eos":
            raise TruncatedAudio(path, f"the file is truncated: {stops}, without the end-of-stream "
                                       "mark that ends every complete Ogg file")
    return Probe(kind, declared, exact)
