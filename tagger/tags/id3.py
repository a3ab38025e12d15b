"""ID3v2 (MP3, and the ID3 chunk of WAV and AIFF): one TCON frame holding every genre.

ID3v2.4 stores several values NUL-separated in one frame, which Navidrome, Jellyfin, MPD and
foobar2000 read as separate genres. ID3v2.3 has no multi-value text, so there the values are
joined with a configurable separator. Never several TCON frames: most readers use the first.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

from mutagen.aiff import AIFF
from mutagen.id3 import TCON, ID3v1SaveOptions
from mutagen.id3._frames import Frames
from mutagen.id3._tags import ID3Header, determine_bpi, save_frame
from mutagen.id3._util import ID3JunkFrameError, ID3SaveConfig, unsynch
from mutagen.mp3 import MP3
from mutagen.wave import WAVE

from tagger.formats.chunks import chunks, overrun
from tagger.tags.base import TagOptions
from tagger.tags.riff_info import info_damaged, info_entries, set_info_genre

#: Where the album and the album artist are (``scan --album`` groups by them).
ALBUM_KEYS = ("TALB", "TPE2")

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


def write(f: Any, genres: list[str], options: TagOptions, into: BinaryIO | None = None) -> None:
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
    _keep_as_stored(f, Path(filename), version)
    v1 = _id3v1_block(filename) if isinstance(f, MP3) else None
    kwargs: dict[str, Any] = {"v2_version": version}
    if version == 3:
        kwargs["v23_sep"] = options.id3v23_separator
    if isinstance(f, MP3):
        kwargs["v1"] = ID3v1SaveOptions.REMOVE if v1 else ID3v1SaveOptions.UPDATE
    f.save(into, **kwargs)
    if v1:
        with open(filename, "ab") as fh:
            fh.write(v1[:127] + bytes([_v1_genre_byte(genres)]))
    if isinstance(f, WAVE):
        set_info_genre(Path(filename), options.id3v23_separator.join(genres) or None)


def _keep_as_stored(f: Any, path: Path, version: int) -> None:
    """Frames mutagen would write back otherwise than they are stored (seen: a TDRC of
    ``2000-01-04T21:57:33Z``, whose seconds and zone mutagen's timestamp drops) go back as
    stored: a frame that occurs once, without frame flags, in a tag saved in its own version.
    They become mutagen's "unknown" frames, which it writes back byte for byte."""
    offset = _tag_offset(path, f)
    try:
        found = _frames(path, offset) if offset is not None else None
    except ValueError:
        return
    if found is None or found[0].version[1] != version:
        return
    stored = found[1]
    ids = [name for name, _, _ in stored]
    config = ID3SaveConfig(version, "/")
    for name, flags, data in stored:
        if name == "TCON" or flags or ids.count(name) != 1 or len(f.tags.getall(name)) != 1:
            continue
        size = struct.pack(">L", _syncsafe(len(data)) if version == 4 else len(data))
        raw = name.encode("latin-1") + size + b"\x00\x00" + data
        if save_frame(f.tags.getall(name)[0], config=config) != raw:
            f.tags.delall(name)
            f.tags.unknown_frames.append(raw)


def _syncsafe(n: int) -> int:
    return (n & 0x7F) | ((n >> 7 & 0x7F) << 8) | ((n >> 14 & 0x7F) << 16) | ((n >> 21 & 0x7F) << 24)


def others(f: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if f.tags is not None:
        out += sorted((k, _frame_value(v)) for k, v in f.tags.items() if not k.startswith("TCON"))
        out += sorted(("unknown frame", raw.hex()) for raw in getattr(f.tags, "unknown_frames", []))
    filename = str(f.filename)
    if isinstance(f, MP3):
        v1 = _id3v1_block(filename)
        out.append(("ID3v1", v1[:127].hex() if v1 else ""))  # the genre byte is ours
    if isinstance(f, WAVE):
        out += [(f"INFO {cid.decode('latin-1')}", data.hex())
                for cid, data in info_entries(Path(filename)) if cid != b"IGNR"]
    return out


def _frame_value(frame: Any) -> str:
    """A frame's content without its text encoding (v2.3 has no UTF-8, so a version change
    re-encodes text; the text itself must stay the same)."""
    specs = [*frame._framespec, *getattr(frame, "_optionalspec", [])]
    return repr([(s.name, getattr(frame, s.name, None)) for s in specs if s.name != "encoding"])


def _tag_offset(path: Path, f: Any) -> int | None:
    """Where the ID3v2 tag starts: the file's head (MP3), or its chunk in a WAV or AIFF."""
    if isinstance(f, (WAVE, AIFF)):
        little = isinstance(f, WAVE)
        with open(path, "rb") as fh:
            for c in chunks(fh, os.fstat(fh.fileno()).st_size, little):
                if c.id in (b"id3 ", b"ID3 "):
                    return c.offset + 8
        return None
    return 0


def _frames(path: Path, offset: int) -> tuple[Any, list[tuple[str, int, bytes]]] | None:
    """The tag's header and its frames as stored (id, flags, data), walked as mutagen walks
    them but without dropping any; None without a v2.3/v2.4 tag there."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        head = fh.read(10)
        if head[:3] != b"ID3" or head[3] not in (3, 4):
            return None
        fh.seek(offset)
        header = ID3Header(fh)
        size = header.size - 10 - (4 + len(header._extdata) if header.f_extended else 0)
        data = fh.read(size)
    if header.version < ID3Header._V24 and header.f_unsynch:
        data = unsynch.decode(data)
    bpi = int if header.version < ID3Header._V24 else determine_bpi(data, Frames)
    frames = []
    while len(data) >= 10:
        name, size, flags = struct.unpack(">4sLH", data[:10])
        if name.strip(b"\x00") == b"":
            break
        size = bpi(size)
        if 10 + size > len(data):  # a size past the end of the tag: mutagen would fix it up
            fid = name.decode("latin-1")
            which = f"the ID3 frame {fid}" if fid.isalnum() and fid.isupper() else "an ID3 frame"
            raise ValueError(f"{which} runs past the end of the tag")
        frames.append((name.decode("latin-1"), flags, data[10:10 + size]))
        data = data[10 + size:]
    return header, frames


def _junk_frames(path: Path, offset: int) -> list[str]:
    """Frames present in the tag that mutagen cannot parse and would silently drop on save."""
    found = _frames(path, offset)
    if found is None:
        return []
    header, frames = found
    junk = []
    for name, flags, data in frames:
        cls = Frames.get(name)
        if cls is None or not data:
            continue
        try:
            cls._fromData(header, flags, data)
        except ID3JunkFrameError:
            junk.append(name)
        except Exception:
            continue  # mutagen keeps what it cannot decode as an unknown frame
    return junk


def raw_frames(path: Path, f: Any) -> tuple[int, list[tuple[str, bytes]]] | None:
    """(tag version, every frame but TCON as stored): what a same-version rewrite must keep
    byte for byte. None for other formats, or when the tag cannot be walked."""
    if not isinstance(f, (MP3, WAVE, AIFF)):
        return None
    offset = _tag_offset(path, f)
    try:
        found = None if offset is None else _frames(path, offset)
    except Exception:
        return None
    if found is None:
        return 0, []
    header, frames = found
    return header.version[1], [(name, data) for name, _, data in frames if name != "TCON"]


def problem(path: Path, f: Any) -> str | None:
    if isinstance(f, (WAVE, AIFF)):
        with open(path, "rb") as fh:
            if overrun(fh, os.fstat(fh.fileno()).st_size, isinstance(f, WAVE)) is not None:
                return ("the file is truncated (a chunk runs past its end), so a new tag "
                        "would land inside the audio")
        if isinstance(f, WAVE) and info_damaged(path):
            return "the WAV INFO list is damaged (its entry sizes do not add up) and would be rewritten"
    offset = _tag_offset(path, f)
    if offset is None:
        return None
    with open(path, "rb") as fh:
        fh.seek(offset)
        head = fh.read(10)
    if head[:3] == b"ID3" and len(head) == 10 and head[5] & 0x10:
        return "its ID3 tag has a footer, which mutagen does not rewrite"
    if head[:3] == b"ID3" and len(head) == 10 and head[5] & 0x40:
        with open(path, "rb") as fh:
            fh.seek(offset + 10)
            if fh.read(4).decode("latin-1") in Frames:  # mutagen ignores the flag and drops it
                return "its ID3 header announces an extended header that is not there"
    try:
        junk = [n for n in _junk_frames(path, offset) if n != "TCON"]
    except Exception as e:
        return str(e) if "runs past" in str(e) else "its ID3 tag cannot be read frame by frame"
    if junk:
        return f"the ID3 frame {junk[0]} is damaged and would be lost"
    return None


