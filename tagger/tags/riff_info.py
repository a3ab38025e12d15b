"""The RIFF ``LIST/INFO`` genre (``IGNR``) of WAV files.

WAV carries two tag formats: the ID3 chunk (read by TagLib, so Navidrome and Jellyfin) and the
older INFO list (read by ffmpeg, which ignores the ID3 chunk when INFO is present, so Plex and
anything built on ffprobe). INFO is single-valued, so the genres are joined there; the ID3 chunk
keeps them as separate values. Files without an INFO list are left without one.

The list is resized in place (as mutagen resizes its own chunks): it is only ever applied to the
temporary copy that :mod:`tagger.tags.safe_write` renames into place, so no second temporary
file is needed.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

from mutagen._util import resize_bytes

from tagger.formats.chunks import Chunk, chunks


def _info_entries(payload: bytes) -> list[tuple[bytes, bytes]]:
    entries, pos = [], 4  # after the b"INFO" list type
    while pos + 8 <= len(payload):
        cid, length = payload[pos:pos + 4], struct.unpack("<I", payload[pos + 4:pos + 8])[0]
        entries.append((cid, payload[pos + 8:pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return entries


def _pack(entries: list[tuple[bytes, bytes]]) -> bytes:
    body = b"INFO"
    for cid, data in entries:
        body += cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) & 1 else b"")
    return body


def _info_chunk(fh: BinaryIO, size: int) -> Chunk | None:
    fh.seek(0)
    if fh.read(12)[8:12] != b"WAVE":
        return None
    for c in chunks(fh, size):
        if c.id == b"LIST":
            fh.seek(c.offset + 8)
            if fh.read(4) == b"INFO":
                return c
    return None


def _well_formed(payload: bytes) -> bool:
    """Do the entries fill the list exactly, each with a printable four-character id? A damaged
    size shifts every entry after it, which a rewrite would then store as garbage."""
    pos = 4
    while pos + 8 <= len(payload):
        cid, length = payload[pos:pos + 4], struct.unpack("<I", payload[pos + 4:pos + 8])[0]
        if not all(0x20 <= b < 0x7F for b in cid) or pos + 8 + length > len(payload):
            return False
        pos += 8 + length + (length & 1)
    return pos in (len(payload), len(payload) + 1)


def info_damaged(path: Path) -> bool:
    """Is there an INFO list whose entries do not add up?"""
    with open(path, "rb") as fh:
        c = _info_chunk(fh, os.fstat(fh.fileno()).st_size)
        if c is None:
            return False
        fh.seek(c.offset + 8)
        return not _well_formed(fh.read(c.length))


def info_entries(path: Path) -> list[tuple[bytes, bytes]]:
    """Every INFO entry (``[]`` without an INFO list): what a genre write must keep."""
    with open(path, "rb") as fh:
        c = _info_chunk(fh, os.fstat(fh.fileno()).st_size)
        if c is None:
            return []
        fh.seek(c.offset + 8)
        return _info_entries(fh.read(c.length))


def set_info_genre(path: Path, genre: str | None) -> bool:
    """Set (or with None remove) ``IGNR`` in an existing INFO list; False if there is none."""
    with open(path, "r+b") as fh:
        c = _info_chunk(fh, os.fstat(fh.fileno()).st_size)
        if c is None:
            return False
        fh.seek(c.offset + 8)
        entries = [e for e in _info_entries(fh.read(c.length)) if e[0] != b"IGNR"]
        if genre:
            entries.append((b"IGNR", genre.encode("utf-8") + b"\0"))
        body = _pack(entries)
        padded = body + (b"\0" if len(body) & 1 else b"")
        resize_bytes(fh, c.length + (c.length & 1), len(padded), c.offset + 8)
        fh.seek(c.offset)
        fh.write(b"LIST" + struct.pack("<I", len(body)) + padded)
        total = fh.seek(0, os.SEEK_END)
        fh.seek(4)
        fh.write(struct.pack("<I", total - 8))
    return True


__all__ = ["info_damaged", "info_entries", "set_info_genre"]
