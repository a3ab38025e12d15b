"""A file's kind from its first bytes, whatever its name (a FLAC called .mp3 is FLAC)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO

from tagger.errors import os_errors

#: The ASF (WMA) Header Object's GUID, which starts the file, and the Data Object's.
ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
ASF_DATA = bytes.fromhex("3626b2758e66cf11a6d900aa0062ce6c")

_MPEG_BITRATES = {  # kbit/s by (MPEG-1?, layer), index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def id3v2_size(head: bytes, synchsafe: bool = False) -> int:
    """The bytes a leading ID3v2 tag takes (header, body, footer) from its 10-byte header; 0
    when ``head`` does not start one. By default the size bytes are read as stored, high bits
    and all: the audio identity has always read them so, and cached identities must not move;
    ``synchsafe`` reads them as the standard says (7 bits each), which sniffing always did."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    m = 0x7F if synchsafe else 0xFF
    size = ((head[6] & m) << 21) | ((head[7] & m) << 14) | ((head[8] & m) << 7) | (head[9] & m)
    return 10 + size + (10 if head[5] & 0x10 else 0)


def _mpeg_frame_length(b: bytes, pos: int) -> int | None:
    """Length of the MPEG audio frame whose header is at ``pos``, or None if there is none."""
    if pos + 4 > len(b) or b[pos] != 0xFF or b[pos + 1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (b[pos + 1] >> 3) & 3, (b[pos + 1] >> 1) & 3
    rate_i, rate_bits, padding = b[pos + 2] >> 4, (b[pos + 2] >> 2) & 3, (b[pos + 2] >> 1) & 1
    if version == 1 or layer_bits == 0 or rate_i in (0, 15) or rate_bits == 3:
        return None
    layer = 4 - layer_bits
    kbps = _MPEG_BITRATES[(version == 3, layer)][rate_i - 1]
    rate = _MPEG_RATES[version][rate_bits]
    if layer == 1:
        return (12 * kbps * 1000 // rate + padding) * 4
    per_frame = 144 if layer == 2 or version == 3 else 72
    return per_frame * kbps * 1000 // rate + padding


def _adts_frame_length(b: bytes, pos: int) -> int | None:
    if pos + 7 > len(b) or b[pos] != 0xFF or b[pos + 1] & 0xF6 != 0xF0:
        return None
    length = ((b[pos + 3] & 3) << 11) | (b[pos + 4] << 3) | (b[pos + 5] >> 5)
    return length if length >= 7 else None


def sniff_bytes(b: bytes) -> str | None:
    """The kind (a key of :data:`tagger.formats.kinds.KINDS`) these first bytes start."""
    if b[:4] == b"fLaC":
        return "FLAC"
    if b[:4] == b"OggS":
        return "Ogg"
    if b[:4] in (b"RIFF", b"RF64", b"BW64") and b[8:12] == b"WAVE":
        return "WAV"
    if b[4:8] == b"ftyp":
        return "MP4"
    if b[:4] == b"FORM" and b[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if b[:16] == ASF_HEADER:
        return "WMA"
    # Bare frame streams have only a 2-byte sync word: two frames in a row make it believable.
    for kind, length_at in (("MP3", _mpeg_frame_length), ("AAC", _adts_frame_length)):
        first = length_at(b, 0)
        if first is not None and length_at(b, first) is not None:
            return kind
    return None


def sniff(path: Path, held: BinaryIO | None = None) -> str | None:
    """What the file's first bytes say it is (``"FLAC"``, ``"MP4"``, ...), whatever its name;
    read from ``held`` when the caller has the file open already (not opened again by name)."""
    with os_errors(path, "read"), (nullcontext(held) if held is not None else open(path, "rb")) as fh:
        fh.seek(0)
        head = fh.read(4096)
        if head[:3] != b"ID3" or len(head) < 10:
            return sniff_bytes(head)
        # An ID3v2 tag: what follows it decides (nearly always MP3; sometimes FLAC or AAC).
        fh.seek(id3v2_size(head, synchsafe=True))
        return sniff_bytes(fh.read(4096)) or "MP3"
