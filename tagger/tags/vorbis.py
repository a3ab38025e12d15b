"""Vorbis comments (FLAC, Ogg Vorbis, Opus): one GENRE field per genre."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, BinaryIO

from mutagen._vorbis import VComment
from mutagen.flac import FLAC
from mutagen.ogg import OggPage

from tagger.tags.base import TagOptions

#: Where the album and the album artist are (``scan --album`` groups by them).
ALBUM_KEYS = ("album", "albumartist")

def read(f: Any, options: TagOptions) -> list[str]:
    if f.tags is None:
        return []
    return [g for g in f.tags.get("genre", []) if g]


def write(f: Any, genres: list[str], options: TagOptions, into: BinaryIO | None = None) -> None:
    if f.tags is None:
        f.add_tags()
    if genres:
        f.tags["genre"] = genres
    elif "genre" in f.tags:
        del f.tags["genre"]
    f.save(into)


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
            head = fh.read(10)
            if head[:3] == b"ID3":
                fh.seek(10 + ((head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]))
            else:
                fh.seek(0)
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
                return None
    return None


def problem(path: Path, f: Any) -> str | None:
    """mutagen reads a comment without ``=`` as ``unknownN=...`` and invalid UTF-8 as U+FFFD,
    and would write them back that way: such a file is not rewritten."""
    try:
        raw = _raw_comment(path, f)
    except Exception:
        return "its Vorbis comment block cannot be read back exactly"
    if raw is None:
        return None
    try:
        VComment(raw[0], errors="strict", framing=raw[1])
    except Exception:
        return ("a Vorbis comment is not in NAME=value form or is not valid UTF-8, and mutagen "
                "would rewrite it")
    return None
