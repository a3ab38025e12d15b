"""Vorbis comments (FLAC, Ogg Vorbis, Opus, Speex, Ogg FLAC): one GENRE field per genre."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, BinaryIO

from mutagen._vorbis import VComment
from mutagen.flac import FLAC
from mutagen.ogg import OggPage

from tagger.formats.sniff import id3v2_size
from tagger.tags.base import TagOptions

#: Where the album and the album artist are (``scan --album`` groups by them).
ALBUM_KEYS = ("album", "albumartist")

def read(f: Any, options: TagOptions) -> list[str]:
    if f.tags is None:
        return []
    return [g for g in f.tags.get("genre", []) if g]


def write(f: Any, genres: list[str], options: TagOptions, into: BinaryIO | None = None) -> None:
    raw = _raw_comment(Path(f.filename), f) if f.tags is not None else None
    if raw is not None and not _faithful(raw):
        _write_exact(f, raw, genres, into)
        return
    if f.tags is None:
        f.add_tags()
    if genres:
        f.tags["genre"] = genres
    elif "genre" in f.tags:
        del f.tags["genre"]
    f.save(into)


def _faithful(raw: tuple[bytes, bool]) -> bool:
    """Would mutagen write this comment block back as it is (NAME=value, valid UTF-8)?"""
    try:
        VComment(raw[0], errors="strict", framing=raw[1])
    except Exception:
        return False
    return True


def _entries(data: bytes) -> tuple[bytes, list[bytes]]:
    """The vendor string and the comments of a Vorbis comment block, as stored."""
    def take(pos: int) -> tuple[bytes, int]:
        if pos + 4 > len(data):
            raise ValueError("its Vorbis comment block is damaged (it ends inside a length)")
        n = int.from_bytes(data[pos:pos + 4], "little")
        if pos + 4 + n > len(data):
            raise ValueError("its Vorbis comment block is damaged (a length runs past its end)")
        return data[pos + 4:pos + 4 + n], pos + 4 + n

    vendor, pos = take(0)
    if pos + 4 > len(data):
        raise ValueError("its Vorbis comment block is damaged (it ends inside a length)")
    count, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
    comments = []
    for _ in range(count):
        entry, pos = take(pos)
        comments.append(entry)
    return vendor, comments


def _is_genre(entry: bytes) -> bool:
    return b"=" in entry and entry.split(b"=", 1)[0].lower() == b"genre"


def _write_exact(f: Any, raw: tuple[bytes, bool], genres: list[str],
                 into: BinaryIO | None) -> None:
    """Comments mutagen would rewrite (a bare ``Sonic Foundry OggVorbis Beta 3``, a Shift-JIS
    value, as old encoders wrote them): we build the block ourselves, every entry but the
    genres kept byte for byte in its place (ours where the first genre was, else at the end),
    and let mutagen lay it out (FLAC blocks and padding, Ogg pages), as it would its own."""
    vendor, comments = _entries(raw[0])
    ours = [b"GENRE=" + g.encode("utf-8") for g in genres]
    new: list[bytes] = []
    for c in comments:
        if not _is_genre(c):
            new.append(c)
        elif ours:
            new, ours = new + ours, []
    new += ours
    data = len(vendor).to_bytes(4, "little") + vendor + len(new).to_bytes(4, "little") + b"".join(
        len(c).to_bytes(4, "little") + c for c in new) + (b"\x01" if raw[1] else b"")
    f.tags.write = lambda *args, **kwargs: data  # what FLAC's block writer and Ogg's _inject call
    f.save(into)
    if into is not None:
        into.flush()
    after = _raw_comment(Path(f.filename), f)
    if after is None or _entries(after[0]) != (vendor, new):
        raise ValueError("the comment block did not read back as written")


def others(f: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if f.tags is not None:
        out.append(("vendor", f.tags.vendor))
        out += sorted((k.lower(), v) for k, v in f.tags if k.lower() != "genre")
    if isinstance(f, FLAC):
        for p in f.pictures:
            out.append(("picture", f"{p.type}|{p.mime}|{p.desc}|{hashlib.sha256(p.data).hexdigest()}"))
        for block in f.metadata_blocks:  # stream info, seek table, cue sheet, application data
            if block.code not in (1, 4, 6):  # padding, the comments, pictures: compared above
                out.append((f"metadata block {block.code}", hashlib.sha256(block.write()).hexdigest()))
    return out


def _raw_comment(path: Path, f: Any) -> tuple[bytes, bool] | None:
    """The comment block's bytes as stored, and whether it ends in a framing bit."""
    with open(path, "rb") as fh:
        if isinstance(f, FLAC):
            fh.seek(id3v2_size(fh.read(10)))
            if fh.read(4) != b"fLaC":
                return None
            while True:
                block = fh.read(4)
                if len(block) < 4:
                    return None
                length = int.from_bytes(block[1:4], "big")
                if block[0] & 0x7F == 4:
                    return fh.read(length), False
                if block[0] & 0x80:
                    return None
                fh.seek(length, 1)
        pages: list[OggPage] = []
        while len(pages) < 256:
            pages.append(OggPage(fh))
            packets = OggPage.to_packets(pages)
            if len(packets) >= 3 or (len(packets) == 2 and pages[-1].complete):
                packet = packets[1]
                if packet.startswith(b"\x03vorbis"):
                    return packet[7:], True
                if packet.startswith(b"OpusTags"):
                    return packet[8:], False
                if packets[0].startswith(b"Speex   "):  # the comments, bare
                    return packet, False
                if packets[0].startswith(b"\x7fFLAC") and packet[:1] and packet[0] & 0x7F == 4:
                    return packet[4:], False  # Ogg FLAC: a FLAC comment block in a packet
                return None
    return None


def problem(path: Path, f: Any) -> str | None:
    """Why the comment block cannot be rewritten faithfully. mutagen reads a comment without
    ``=`` as ``unknownN=...`` and invalid UTF-8 as U+FFFD and would write them back that way;
    such a block is rewritten by :func:`write` byte for byte instead, so only a block whose
    lengths do not hold together is refused."""
    try:
        raw = _raw_comment(path, f)
    except Exception:
        return "its Vorbis comment block cannot be read back exactly"
    if raw is None or _faithful(raw):
        return None
    try:
        _entries(raw[0])
    except ValueError as e:
        return str(e)
    return None
