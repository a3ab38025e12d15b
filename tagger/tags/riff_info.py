"""The RIFF ``LIST/INFO`` genre (``IGNR``) of WAV files.

WAV carries two tag formats: the ID3 chunk (read by TagLib, so Navidrome and Jellyfin) and the
older INFO list (read by ffmpeg, which ignores the ID3 chunk when INFO is present, so Plex and
anything built on ffprobe). INFO is single-valued, so the genres are joined there; the ID3 chunk
keeps them as separate values. Files without an INFO list are left without one.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO


def _chunks(fh: BinaryIO, size: int) -> list[tuple[bytes, int, int]]:
    """(id, offset of the chunk header, payload length) of every top-level chunk."""
    out = []
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        head = fh.read(8)
        cid, length = head[:4], struct.unpack("<I", head[4:8])[0]
        out.append((cid, pos, length))
        pos += 8 + length + (length & 1)
    return out


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


def set_info_genre(path: Path, genre: str | None) -> bool:
    """Set (or with None remove) ``IGNR`` in an existing INFO list; False if there is none."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if fh.read(12)[8:12] != b"WAVE":
            return False
        chunks = _chunks(fh, size)
        info = next(((o, n) for cid, o, n in chunks
                     if cid == b"LIST" and _list_type(fh, o) == b"INFO"), None)
        if info is None:
            return False
        fh.seek(info[0] + 8)
        entries = [e for e in _info_entries(fh.read(info[1])) if e[0] != b"IGNR"]
    if genre:
        entries.append((b"IGNR", genre.encode("utf-8") + b"\0"))
    new_list = _pack(entries)
    tmp = path.with_name(path.name + ".info")
    with open(path, "rb") as src, open(tmp, "wb") as out:
        out.write(b"RIFF\0\0\0\0WAVE")
        for _cid, offset, length in chunks:
            if offset == info[0]:
                out.write(b"LIST" + struct.pack("<I", len(new_list)) + new_list)
                if len(new_list) & 1:
                    out.write(b"\0")
                continue
            src.seek(offset)
            _copy(src, out, 8 + length + (length & 1))
        total = out.tell()
        out.seek(4)
        out.write(struct.pack("<I", total - 8))
    os.replace(tmp, path)
    return True


def _list_type(fh: BinaryIO, offset: int) -> bytes:
    fh.seek(offset + 8)
    return fh.read(4)


def _copy(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    left = n
    while left > 0:
        block = src.read(min(1 << 20, left))
        if not block:
            break
        dst.write(block)
        left -= len(block)


__all__ = ["set_info_genre"]
