"""Read a PNG's size and text chunks without an imaging library: a picture's own record of what
it draws (tagger.plots writes it as JSON in a ``Series`` chunk)."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> tuple[int, int, dict[str, str]]:
    """(width, height, text chunks); AssertionError if the file is not a whole, valid PNG."""
    data = path.read_bytes()
    assert data[:8] == SIGNATURE, "not a PNG"
    pos, size, texts, ended = 8, (0, 0), {}, False
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            texts[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\0")  # language
            _, _, value = rest.partition(b"\0")  # translated keyword
            texts[key.decode("utf-8")] = (zlib.decompress(value) if compressed else value).decode()
        elif kind == b"IEND":
            ended = True
        pos += 12 + length
    assert ended, "truncated PNG (no IEND)"
    return size[0], size[1], texts


def series(path: Path) -> dict[str, Any]:
    """What the picture says it draws."""
    w, h, texts = read_png(path)
    assert w >= 300 and h >= 200, (w, h)
    return json.loads(texts["Series"])  # type: ignore[no-any-return]
