"""The one walker over RIFF (WAV, little-endian) and IFF (AIFF, big-endian) chunks, shared by
the audio identity, the WAV INFO genre and the check that a WAV or AIFF can be rewritten."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class Chunk:
    id: bytes
    offset: int  # of the 8-byte chunk header
    length: int  # payload length as declared (may run past the end of a damaged file)

    @property
    def end(self) -> int:
        """Where the next chunk starts (payloads are padded to an even length)."""
        return self.offset + 8 + self.length + (self.length & 1)


def chunks(fh: BinaryIO, size: int, little: bool = True) -> Iterator[Chunk]:
    """Every top-level chunk after the 12-byte ``RIFF....WAVE`` / ``FORM....AIFF`` header."""
    fmt = "<I" if little else ">I"
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        head = fh.read(8)
        if len(head) < 8:
            return
        chunk = Chunk(head[:4], pos, struct.unpack(fmt, head[4:8])[0])
        yield chunk
        pos = chunk.end


def overrun(fh: BinaryIO, size: int, little: bool = True) -> Chunk | None:
    """The first chunk that claims more bytes than the file holds (a truncated file)."""
    return next((c for c in chunks(fh, size, little) if c.offset + 8 + c.length > size), None)
