"""A file's audio identity: a hash of its audio payload that tag edits do not change.

Rewriting genres changes a file's bytes, size and (often) its tag layout, but not its audio
frames. Hashing only the payload lets the cache recognise a file we tagged, or one that was
moved or renamed, without decoding it, while a re-encode or an edit of the audio is a new
identity. Container by container, the payload is:

* MP3 / raw AAC: everything between a leading ID3v2 tag and trailing ID3v1 / APEv2 tags;
* FLAC: the frames after the metadata blocks;
* Ogg (Vorbis, Opus, ...): the packet bytes after the header packets (page headers carry sequence
  numbers and CRCs that change when the comment packet grows, so they are left out);
* MP4: the contents of the ``mdat`` atoms;
* WAV: the ``data`` chunk; AIFF: the ``SSND`` chunk;
* ASF/WMA: the Data Object.

Anything else, or a payload that cannot be located or is implausibly small (a damaged
container), falls back to the hash of the whole file: a tag edit then looks like new audio, which
costs one analysis, never a wrong answer; and a tag rewrite of such a file cannot be verified,
so it is refused.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from tagger.formats.chunks import chunks
from tagger.formats.sniff import ASF_DATA, ASF_HEADER, id3v2_size

CHUNK = 1 << 20
#: A located payload smaller than this is not audio: the container is damaged or lying.
MIN_PAYLOAD = 1024


def _read_range(fh: BinaryIO, start: int, end: int) -> Iterator[bytes]:
    fh.seek(start)
    left = end - start
    while left > 0:
        block = fh.read(min(CHUNK, left))
        if not block:
            return
        left -= len(block)
        yield block


def _mpeg(fh: BinaryIO, size: int) -> Iterator[bytes]:
    fh.seek(0)
    start = 0
    while True:  # some files carry several ID3v2 tags back to back
        fh.seek(start)
        n = id3v2_size(fh.read(10))
        if not n:
            break
        start += n
    end = size
    if end - start >= 128:
        fh.seek(end - 128)
        if fh.read(3) == b"TAG":
            end -= 128
    if end - start >= 32:
        fh.seek(end - 32)
        footer = fh.read(32)
        if footer[:8] == b"APETAGEX":
            tag_size = struct.unpack("<I", footer[12:16])[0]
            flags = struct.unpack("<I", footer[20:24])[0]
            end -= tag_size + (32 if flags & (1 << 31) else 0)
            if end - start < MIN_PAYLOAD:  # a damaged footer claiming the whole file
                raise ValueError("implausible APE tag size")
    yield from _read_range(fh, start, end)


def _flac(fh: BinaryIO, size: int) -> Iterator[bytes]:
    fh.seek(0)
    pos = id3v2_size(fh.read(10))
    fh.seek(pos)
    if fh.read(4) != b"fLaC":
        raise ValueError("not FLAC")
    pos += 4
    while True:
        fh.seek(pos)
        head = fh.read(4)
        if len(head) < 4:
            raise ValueError("truncated FLAC metadata")
        pos += 4 + int.from_bytes(head[1:4], "big")
        if head[0] & 0x80:
            break
    yield from _read_range(fh, pos, size)


def _ogg(fh: BinaryIO, size: int) -> Iterator[bytes]:
    fh.seek(0)
    header_packets: int | None = None
    packets = 0
    first_packet = b""
    while True:
        head = fh.read(27)
        if len(head) < 27:
            return
        if head[:4] != b"OggS":
            raise ValueError("lost Ogg sync")
        lacing = fh.read(head[26])
        payload = fh.read(sum(lacing))
        pos = 0
        for lace in lacing:
            seg = payload[pos:pos + lace]
            pos += lace
            if header_packets is None:
                first_packet += seg
            if packets >= (header_packets or 2**31):
                yield seg
            if lace < 255:
                if header_packets is None:
                    header_packets = 2 if first_packet.startswith(b"OpusHead") else 3
                packets += 1


def _mp4(fh: BinaryIO, size: int) -> Iterator[bytes]:
    pos = 0
    found = False
    while pos + 8 <= size:
        fh.seek(pos)
        head = fh.read(16)
        atom_size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if atom_size == 1:
            atom_size = struct.unpack(">Q", head[8:16])[0]
            header = 16
        elif atom_size == 0:
            atom_size = size - pos
        if atom_size < header:
            raise ValueError("bad MP4 atom")
        if kind == b"mdat":
            found = True
            yield from _read_range(fh, pos + header, pos + atom_size)
        pos += atom_size
    if not found:
        raise ValueError("no mdat atom")


def _iff(fh: BinaryIO, size: int, wanted: bytes, little: bool) -> Iterator[bytes]:
    for chunk in chunks(fh, size, little):
        if chunk.id == wanted:
            yield from _read_range(fh, chunk.offset + 8, min(size, chunk.offset + 8 + chunk.length))
            return
    raise ValueError(f"no {wanted.decode()} chunk")


def _asf(fh: BinaryIO, size: int) -> Iterator[bytes]:
    pos = 0
    while pos + 24 <= size:
        fh.seek(pos)
        head = fh.read(24)
        obj_size = struct.unpack("<Q", head[16:24])[0]
        if head[:16] == ASF_DATA:
            yield from _read_range(fh, pos + 50, min(size, pos + obj_size))  # skip file id, count
            return
        if obj_size < 24:
            raise ValueError("bad ASF object")
        pos += obj_size
    raise ValueError("no ASF data object")


def _payload(fh: BinaryIO, size: int) -> tuple[str, Iterator[bytes]]:
    fh.seek(0)
    head = fh.read(12)
    fh.seek(id3v2_size(head))
    after_id3 = fh.read(4)
    if head[:4] == b"fLaC" or after_id3 == b"fLaC":
        return "flac", _flac(fh, size)
    if head[:4] == b"OggS":
        return "ogg", _ogg(fh, size)
    if head[4:8] == b"ftyp":
        return "mp4", _mp4(fh, size)
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav", _iff(fh, size, b"data", little=True)
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff", _iff(fh, size, b"SSND", little=False)
    if head[:16] == ASF_HEADER[:12] + head[12:16] and head[:12] == ASF_HEADER[:12]:
        return "asf", _asf(fh, size)
    if head[:3] == b"ID3" or head[:2] in (b"\xff\xfb", b"\xff\xfa", b"\xff\xf3", b"\xff\xf2",
                                            b"\xff\xe3", b"\xff\xf1", b"\xff\xf9"):
        return "mpeg", _mpeg(fh, size)
    return "file", _read_range(fh, 0, size)


def audio_identity(path: str | Path) -> str:
    """``kind:sha256`` of the audio payload; ``file:sha256`` of the whole file when the payload
    cannot be located (unknown or damaged container, or a payload too small to be audio)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        kind, blocks = _payload(fh, size)
        h = hashlib.sha256()
        hashed = 0
        try:
            for block in blocks:
                h.update(block)
                hashed += len(block)
        except (ValueError, struct.error):
            kind = "file"
        if kind != "file" and hashed < MIN_PAYLOAD:
            kind = "file"
        if kind == "file":
            h = hashlib.sha256()
            for block in _read_range(fh, 0, size):
                h.update(block)
    return f"{kind}:{h.hexdigest()}"


_EMPTY = hashlib.sha256(b"").hexdigest()


def trusted(audio_id: str | None) -> bool:
    """May two files with this identity share one analysis?

    A whole-file hash is (equal bytes, equal audio); an empty payload hash is not: releases
    before 0.2 stored one for every MP3 whose damaged APE footer hid its audio, so different
    songs matched.
    """
    return bool(audio_id) and not str(audio_id).endswith(":" + _EMPTY)


def located(audio_id: str | None) -> bool:
    """Was the audio payload itself hashed (so a tag rewrite must leave the identity as is)?"""
    return trusted(audio_id) and not str(audio_id).startswith("file:")
