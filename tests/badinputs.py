"""Hundreds of bad and odd inputs (issue 9), built from real encoded audio with a seeded RNG.

Run ``python tests/badinputs.py OUT`` to build the set by hand (the same bytes every time) and see
what each case is; ``tests/test_abuse.py`` builds it, runs ``predict`` and ``scan`` over it and
checks every outcome. Uses only ffmpeg, mutagen and the standard library (never ``tagger``),
so it tests the command line as a user meets it.

Layout under the build folder: ``library/`` is the root to scan; ``outside/`` holds what some
symlinks in the library point to (a file outside the roots, which must never be written).
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LIBRARY = "library"
OUTSIDE = "outside"
SEED = 9

# What a case may end as. The test maps every outcome in the scan report onto these.
TAGGED = "tagged-or-abstained"  # analysed, then tagged or abstained (never failed)
FAILED = "failed"  # a failure with a reason in plain words
ANY = "any"  # exactly one outcome of any kind (damaged files may still decode)
NOT_REGULAR = "skipped-not-regular"  # FIFOs, devices, dangling links: not a file to analyse
HIDDEN = "skipped-hidden"  # names starting with "." are skipped by design
IGNORED = "ignored-not-audio-name"  # not an audio extension: never looked at
IN_UNREADABLE = "skipped-unreadable-folder"  # inside a folder the scan cannot read: that folder's line
FOLDER = "folder-reported"  # a folder that cannot be read: one line naming it
SKIP_OR_FAIL = "skipped-or-failed"  # a symlink loop: no outcome, or one failure with a reason
OUTSIDE_ROOTS = "outside-roots"  # reached through a link, outside the roots: analysed, never written
OUTSIDE_TARGET = "outside-untouched"  # a file outside the roots: must never change
FOLDER_LINK = "folder-link"  # a link to a folder: its files are found once, under some path

#: extension and ffmpeg encoder arguments of every format the issue names (m4a with its moov
#: first, so a cut keeps the index and truncates the audio).
FORMATS: dict[str, tuple[str, list[str]]] = {
    "mp3": (".mp3", ["-c:a", "libmp3lame", "-q:a", "6"]),
    "flac": (".flac", ["-c:a", "flac"]),
    "ogg": (".ogg", ["-c:a", "libvorbis", "-q:a", "1"]),
    "opus": (".opus", ["-c:a", "libopus", "-b:a", "32k"]),
    "m4a": (".m4a", ["-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart"]),
    "wav": (".wav", ["-c:a", "pcm_s16le"]),
    "aiff": (".aiff", ["-c:a", "pcm_s16be", "-write_id3v2", "1"]),
    "wma": (".wma", ["-c:a", "wmav2", "-b:a", "48k"]),
}
RATE = 22_050
PARENT_SECONDS = 6.0
TAGS = {"title": "Señor Test", "artist": "The Fixtures", "album": "Bad Inputs", "date": "2024",
        "track": "3/12", "comment": "keep me"}
AUDIO_EXTS = [ext for ext, _ in FORMATS.values()]


@dataclass(frozen=True)
class Case:
    """One input: ``path`` relative to the build folder (``os.fsdecode`` form, so any bytes)."""

    path: str
    cls: str
    expect: str
    note: str = ""


# --- making audio -------------------------------------------------------------------------------


def ffmpeg(*args: str | bytes) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True,
                   stdout=subprocess.DEVNULL)


def tone_expr(rng: random.Random, amp: float = 1.0) -> str:
    """A chord, a beat and a little noise: real features, different for every seed."""
    f = [round(rng.uniform(110, 440), 1) for _ in range(3)]
    beat = round(rng.uniform(0.3, 0.7), 2)
    a = 0.2 * amp
    return (f"{a}*sin(2*PI*{f[0]}*t)+{a}*sin(2*PI*{f[1]}*t)+{a}*sin(2*PI*{f[2]}*t)"
            f"+{0.3 * amp}*exp(-mod(t\\,{beat})*30)*sin(2*PI*60*t)+{0.02 * amp}*(2*random(0)-1)")


def encode(out: Path, fmt: str, seconds: float, rng: random.Random, *, silent: bool = False,
           amp: float = 1.0, rate: int = RATE, tags: bool = True, args: list[str] | None = None) -> bytes:
    """Encode real audio to ``out`` (any name: written under a plain name, then renamed)."""
    ext, codec = FORMATS.get(fmt, (out.suffix, []))
    expr = "0" if silent else tone_expr(rng, amp)
    tmp = out.parent / f"_encoding{ext}"
    meta = [x for k, v in TAGS.items() for x in ("-metadata", f"{k}={v}")] if tags else []
    source = f"aevalsrc='{expr}':s={rate}:d={min(seconds, 10)}"
    if seconds > 10:  # evaluating the expression is slow: loop ten seconds of it
        source += f",aloop=loop=-1:size={10 * rate}"
    ffmpeg("-f", "lavfi", "-i", source, "-t", str(seconds), "-fflags", "+bitexact",  # no random Ogg serials
           *(args if args is not None else codec), *meta, str(tmp))
    os.rename(tmp, out)
    return out.read_bytes()


# --- where the parts of each container are -------------------------------------------------------


def _be(d: bytes, o: int, n: int) -> int:
    return int.from_bytes(d[o:o + n], "big")


def _le(d: bytes, o: int, n: int) -> int:
    return int.from_bytes(d[o:o + n], "little")


def syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _syncsafe(d: bytes, o: int) -> int:
    return (d[o] & 0x7F) << 21 | (d[o + 1] & 0x7F) << 14 | (d[o + 2] & 0x7F) << 7 | (d[o + 3] & 0x7F)


_MP3_RATES = {3: (44_100, 48_000, 32_000), 2: (22_050, 24_000, 16_000), 0: (11_025, 12_000, 8_000)}
_MP3_KBPS = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}


def _mp3_frame(d: bytes, p: int) -> int:
    """Length of the layer III frame at ``p`` (0: no frame there)."""
    if p + 4 > len(d) or d[p] != 0xFF or d[p + 1] & 0xE0 != 0xE0:
        return 0
    ver, layer, br, sr = (d[p + 1] >> 3) & 3, (d[p + 1] >> 1) & 3, d[p + 2] >> 4, (d[p + 2] >> 2) & 3
    if ver == 1 or layer != 1 or br in (0, 15) or sr == 3:
        return 0
    kbps = _MP3_KBPS[3 if ver == 3 else 2][br]
    return (144 if ver == 3 else 72) * kbps * 1000 // _MP3_RATES[ver][sr] + ((d[p + 2] >> 1) & 1)


def _id3_marks(d: bytes, base: int = 0) -> tuple[list[tuple[int, str]], int]:
    if d[base:base + 3] != b"ID3":
        return [], base
    end = base + 10 + _syncsafe(d, base + 6) + (10 if d[base + 5] & 0x10 else 0)
    marks = [(base + 3, "ID3 version"), (base + 6, "ID3 size"), (base + 10, "first ID3 frame"),
             (end, "end of the ID3 tag")]
    p = base + 10
    while p + 10 <= end and d[p:p + 4].isalnum():
        size = _syncsafe(d, p + 4) if d[base + 3] == 4 else _be(d, p + 4, 4)
        marks += [(p, f"ID3 frame {d[p:p + 4].decode()}"), (p + 10, f"ID3 frame {d[p:p + 4].decode()} body")]
        p += 10 + size
    return marks, end


def _mp3(d: bytes) -> tuple[list[tuple[int, str]], int]:
    marks, p = _id3_marks(d)
    while p < len(d) - 4 and not _mp3_frame(d, p):
        p += 1
    frames = []
    while (n := _mp3_frame(d, p)) and len(frames) < 5000:
        frames.append(p)
        p += n
    marks += [(f, f"MPEG frame {i}") for i, f in enumerate(frames[:4])]
    marks += [(f, f"MPEG frame {i + len(frames) - 2}") for i, f in enumerate(frames[-2:])]
    return marks, frames[1] if len(frames) > 1 else p


def _flac(d: bytes) -> tuple[list[tuple[int, str]], int]:
    marks, p = [(0, "fLaC magic"), (4, "STREAMINFO header"), (8, "STREAMINFO body")], 4
    while p + 4 <= len(d):
        last, kind, size = d[p] & 0x80, d[p] & 0x7F, _be(d, p + 1, 3)
        marks += [(p, f"metadata block type {kind}"), (p + 4, f"metadata block type {kind} body")]
        p += 4 + size
        if last:
            break
    audio, q = p, p
    for i in range(3):
        marks.append((q, f"FLAC frame {i}"))
        q = d.find(b"\xff\xf8", q + 2)
        if q < 0:
            break
    return marks, audio


def ogg_pages(d: bytes) -> list[tuple[int, int]]:
    """(offset, granule position) of every Ogg page."""
    pages, p = [], 0
    while p + 27 <= len(d) and d[p:p + 4] == b"OggS":
        n = d[p + 26]
        pages.append((p, int.from_bytes(d[p + 6:p + 14], "little", signed=True)))
        p += 27 + n + sum(d[p + 27:p + 27 + n])
    return pages


def _ogg(d: bytes) -> tuple[list[tuple[int, str]], int]:
    pages = ogg_pages(d)
    marks = [(p, f"Ogg page {i}") for i, (p, _) in enumerate(pages)]
    marks += [(p + 27, f"Ogg page {i} segment table") for i, (p, _) in enumerate(pages[:3])]
    audio = next((p for p, g in pages if g > 0), len(d) // 2)
    return marks, audio


def _mp4_atoms(d: bytes, start: int, end: int, marks: list[tuple[int, str]], found: dict[bytes, int]) -> None:
    p = start
    while p + 8 <= end:
        size, kind, head = _be(d, p, 4), d[p + 4:p + 8], 8
        if size == 1:
            size, head = _be(d, p + 8, 8), 16
        elif size == 0:
            size = end - p
        if size < head or p + size > end:
            return
        found.setdefault(kind, p)
        marks += [(p, f"{kind.decode('latin-1')} atom"), (p + head, f"{kind.decode('latin-1')} body")]
        if kind in (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta"):
            _mp4_atoms(d, p + head, p + size, marks, found)
        elif kind == b"meta":
            _mp4_atoms(d, p + head + 4, p + size, marks, found)
        p += size


def mp4_atoms(d: bytes) -> dict[bytes, int]:
    """Offset of the first atom of each kind (moov, mdat, stco, ilst, ...)."""
    found: dict[bytes, int] = {}
    _mp4_atoms(d, 0, len(d), [], found)
    return found


def _m4a(d: bytes) -> tuple[list[tuple[int, str]], int]:
    marks: list[tuple[int, str]] = []
    found: dict[bytes, int] = {}
    _mp4_atoms(d, 0, len(d), marks, found)
    return marks, found.get(b"mdat", len(d) // 2) + 8


def riff_chunks(d: bytes, big: bool = False) -> list[tuple[int, bytes, int]]:
    """(offset, id, size) of each chunk of a RIFF (WAV) or, with ``big``, FORM (AIFF) file."""
    chunks, p = [], 12
    while p + 8 <= len(d):
        size = _be(d, p + 4, 4) if big else _le(d, p + 4, 4)
        chunks.append((p, d[p:p + 4], size))
        p += 8 + size + (size & 1)
    return chunks


def _riff(d: bytes, big: bool) -> tuple[list[tuple[int, str]], int]:
    marks = [(4, "RIFF size"), (8, "form type"), (12, "first chunk")]
    audio = len(d) // 2
    for p, cid, _ in riff_chunks(d, big):
        name = cid.decode("latin-1")
        marks += [(p, f"{name} chunk"), (p + 8, f"{name} body")]
        if cid in (b"data", b"SSND"):
            audio = p + (16 if big else 8)
            marks.append((audio + 1, "second audio byte"))
    return marks, audio


ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
ASF_FILE_PROPERTIES = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")
ASF_EXTENDED_CONTENT = bytes.fromhex("40a4d0d207e3d21197f000a0c95ea850")


def _wma(d: bytes) -> tuple[list[tuple[int, str]], int]:
    marks = [(16, "ASF header size"), (24, "ASF object count"), (30, "first header object")]
    end, p, packet = _le(d, 16, 8), 30, 0
    for i in range(_le(d, 24, 4)):
        if p + 24 > len(d):
            break
        if d[p:p + 16] == ASF_FILE_PROPERTIES:
            packet = _le(d, p + 92, 4)
        marks += [(p, f"header object {i}"), (p + 24, f"header object {i} body")]
        p += max(24, _le(d, p + 16, 8))
    marks += [(end, "data object"), (end + 50, "first data packet")]
    for k in range(1, 4):
        if packet:
            marks.append((end + 50 + k * packet, f"data packet {k}"))
    return marks, end + 50


def structure(d: bytes, fmt: str) -> tuple[list[tuple[int, str]], int]:
    """Offsets where one part of the container meets the next (with names), and where the
    audio payload starts: the places a cut or a flipped bit hurts most."""
    parse: dict[str, Callable[[bytes], tuple[list[tuple[int, str]], int]]] = {
        "mp3": _mp3, "flac": _flac, "ogg": _ogg, "opus": _ogg, "m4a": _m4a,
        "wav": lambda b: _riff(b, False), "aiff": lambda b: _riff(b, True), "wma": _wma}
    marks, audio = parse[fmt](d)
    return sorted({(p, n) for p, n in marks if 0 < p < len(d)}), audio


# --- damage ---------------------------------------------------------------------------------------


def put(d: bytes, offset: int, value: bytes) -> bytes:
    return d[:offset] + value + d[offset + len(value):]


def flip_bits(d: bytes, rng: random.Random, lo: int, hi: int, k: int) -> tuple[bytes, list[int]]:
    b = bytearray(d)
    where = sorted(rng.randrange(lo, max(lo + 1, hi)) for _ in range(k))
    for i in where:
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b), where


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def ogg_fix_crc(d: bytes) -> bytes:
    """Recompute every page's checksum, so a damaged field is read, not dropped as a bad page."""
    b = bytearray(d)
    pages = ogg_pages(d)
    for i, (p, _) in enumerate(pages):
        end = pages[i + 1][0] if i + 1 < len(pages) else len(d)
        b[p + 22:p + 26] = b"\0\0\0\0"
        crc = 0
        for byte in b[p:end]:
            crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ byte]
        b[p + 22:p + 26] = crc.to_bytes(4, "little")
    return bytes(b)


def _ogg_damage(d: bytes, fmt: str) -> list[tuple[str, bytes, str]]:
    pages = ogg_pages(d)
    last = pages[-1][0]
    out = [("last page granule 2^40", put(d, last + 6, (1 << 40).to_bytes(8, "little")), ANY),
           ("middle page has another serial", put(d, pages[len(pages) // 2][0] + 14, b"\x12\x34\x56"), ANY),
           ("end-of-stream flag on the third page", put(d, pages[2][0] + 5, b"\x04"), ANY),
           ("granule positions run backwards", put(d, pages[-2][0] + 6, (1 << 30).to_bytes(8, "little")),
            ANY)]
    if fmt == "ogg":
        q = d.find(b"\x03vorbis")
        vendor = _le(d, q + 7, 4)
        i = d.find(b"\x01vorbis")
        out += [("vorbis comment count 2^31-1", put(d, q + 11 + vendor, b"\xff\xff\xff\x7f"), ANY),
                ("first vorbis comment length 2^32-1", put(d, q + 15 + vendor, b"\xff\xff\xff\xff"), ANY),
                ("vorbis vendor length 2^32-1", put(d, q + 7, b"\xff\xff\xff\xff"), ANY),
                ("vorbis sample rate 0", put(d, i + 12, b"\0\0\0\0"), ANY),
                ("vorbis channels 0", put(d, i + 11, b"\0"), ANY)]
    else:
        h, t = d.find(b"OpusHead"), d.find(b"OpusTags")
        vendor = _le(d, t + 8, 4)
        out += [("OpusHead channels 0", put(d, h + 9, b"\0"), ANY),
                ("OpusHead pre-skip 65535", put(d, h + 10, b"\xff\xff"), ANY),
                ("OpusHead version 255", put(d, h + 8, b"\xff"), ANY),
                ("OpusTags count 2^31-1", put(d, t + 12 + vendor, b"\xff\xff\xff\x7f"), ANY),
                ("OpusTags vendor length 2^32-1", put(d, t + 8, b"\xff\xff\xff\xff"), ANY)]
    return [(n, ogg_fix_crc(b), e) for n, b, e in out]


def _flac_damage(d: bytes) -> list[tuple[str, bytes, str]]:
    body = 8
    blocks, p = [], 4
    while True:
        blocks.append((p, d[p] & 0x7F))
        last = d[p] & 0x80
        p += 4 + _be(d, p + 1, 3)
        if last:
            break
    last_block = blocks[-1][0]
    vc = next((q for q, kind in blocks if kind == 4), None)
    total = bytearray(d[body + 13:body + 18])
    total[0] |= 0x0F
    total[1:] = b"\xff\xff\xff\xff"
    out = [("STREAMINFO length 2^24-1", put(d, 5, b"\xff\xff\xff"), ANY),
           ("STREAMINFO declares 2^36-1 samples", put(d, body + 13, bytes(total)), ANY),
           ("STREAMINFO sample rate 0", put(d, body + 10, b"\0\0" + bytes([d[body + 12] & 0x0F])), ANY),
           ("no metadata block is marked last", put(d, last_block, bytes([d[last_block] & 0x7F])), ANY),
           ("fLaC magic damaged", put(d, 0, b"fLaX"), ANY),
           ("STREAMINFO MD5 wrong", put(d, body + 18, b"\x5a" * 16), ANY)]
    if vc is not None:
        vendor = _le(d, vc + 4, 4)
        out += [("vorbis comment vendor length 2^32-1", put(d, vc + 4, b"\xff\xff\xff\xff"), ANY),
                ("vorbis comment count 2^31-1", put(d, vc + 8 + vendor, b"\xff\xff\xff\x7f"), ANY),
                ("metadata block length past the end", put(d, vc + 1, b"\x7f\xff\xff"), ANY)]
    return out


def _m4a_damage(d: bytes, moov_last: bytes) -> list[tuple[str, bytes, str]]:
    a = mp4_atoms(d)
    moov, mdat = a[b"moov"], a[b"mdat"]
    moov_size = _be(d, moov, 4)
    out = [("moov atom removed", d[:moov] + d[moov + moov_size:], FAILED),
           ("moov atom renamed free", put(d, moov + 4, b"free"), ANY),  # ffmpeg finds it there
           ("moov size 2^32-1", put(d, moov, b"\xff\xff\xff\xff"), ANY),
           ("moov size 0", put(d, moov, b"\0\0\0\0"), ANY),
           ("moov size 7", put(d, moov, b"\0\0\0\x07"), ANY),
           ("mdat size 2^32-1", put(d, mdat, b"\xff\xff\xff\xff"), ANY),
           ("ftyp brand garbage", put(d, a[b"ftyp"] + 8, b"\xde\xad\xbe\xef"), ANY)]
    for kind, off, value, what in ((b"stco", 16, b"\x7f\xff\xff\xff", "first chunk offset 2^31-1"),
                                   (b"stsz", 20, b"\x7f\xff\xff\xff", "first sample size 2^31-1"),
                                   (b"stsz", 16, b"\x7f\xff\xff\xff", "sample count 2^31-1"),
                                   (b"mdhd", 20, b"\0\0\0\0", "time scale 0"),
                                   (b"stsd", 12, b"\x7f\xff\xff\xff", "sample entry count 2^31-1"),
                                   (b"ilst", 0, b"\x7f\xff\xff\xff", "size 2^31-1"),
                                   (b"ilst", 8, b"\0\0\0\x03", "first tag size 3")):
        if kind in a:
            out.append((f"{kind.decode()} {what}", put(d, a[kind] + off, value), ANY))
    mv = mp4_atoms(moov_last)
    out.append(("moov at the end, cut off", moov_last[:mv[b"moov"]], FAILED))
    out.append(("moov at the end, half of it cut off",
                moov_last[:mv[b"moov"] + _be(moov_last, mv[b"moov"], 4) // 2], ANY))
    return out


def _wav_damage(d: bytes) -> list[tuple[str, bytes, str]]:
    ch = {cid: (p, size) for p, cid, size in riff_chunks(d)}
    fmt, data = ch[b"fmt "][0], ch[b"data"]
    return [("data chunk size 2^32-1", put(d, data[0] + 4, b"\xff\xff\xff\xff"), ANY),
            ("data chunk overruns the file twice over",
             put(d, data[0] + 4, (2 * data[1]).to_bytes(4, "little")), ANY),
            ("RIFF size 2^32-1", put(d, 4, b"\xff\xff\xff\xff"), ANY),
            ("RIFF size 100", put(d, 4, (100).to_bytes(4, "little")), ANY),
            ("fmt chunk size 1000", put(d, fmt + 4, (1000).to_bytes(4, "little")), ANY),
            ("fmt channels 0", put(d, fmt + 10, b"\0\0"), FAILED),
            ("fmt sample rate 0", put(d, fmt + 12, b"\0\0\0\0"), FAILED),
            ("fmt bits per sample 0", put(d, fmt + 22, b"\0\0"), ANY),
            ("fmt block align 0", put(d, fmt + 20, b"\0\0"), ANY),
            ("fmt codec 0x1234", put(d, fmt + 8, b"\x34\x12"), FAILED),
            ("no data chunk (renamed junk)", put(d, data[0], b"junk"), FAILED),
            ("chunk after data claims 2^31 bytes", d + b"LIST" + b"\0\0\0\x80" + b"INFO", ANY),
            ("odd data size without padding", put(d, data[0] + 4, (data[1] - 1).to_bytes(4, "little")), ANY)]


def _aiff_damage(d: bytes) -> list[tuple[str, bytes, str]]:
    ch = {cid: (p, size) for p, cid, size in riff_chunks(d, big=True)}
    comm, ssnd = ch[b"COMM"][0], ch[b"SSND"][0]
    out = [("COMM declares 2^31-1 sample frames", put(d, comm + 10, b"\x7f\xff\xff\xff"), ANY),
           ("COMM channels 0", put(d, comm + 8, b"\0\0"), FAILED),
           ("COMM sample rate 0", put(d, comm + 16, b"\0" * 10), ANY),
           ("SSND size 2^32-1", put(d, ssnd + 4, b"\xff\xff\xff\xff"), ANY),
           ("FORM size 2^32-1", put(d, 4, b"\xff\xff\xff\xff"), ANY)]
    if b"ID3 " in ch:
        i = ch[b"ID3 "][0] + 8
        out += [("ID3 chunk with ID3 size 2^28-1", put(d, i + 6, b"\x7f\x7f\x7f\x7f"), ANY),
                ("ID3 chunk size 2^32-1", put(d, ch[b"ID3 "][0] + 4, b"\xff\xff\xff\xff"), ANY)]
    return out


def _wma_damage(d: bytes) -> list[tuple[str, bytes, str]]:
    end = _le(d, 16, 8)
    fp = d.find(ASF_FILE_PROPERTIES)
    ext = d.find(ASF_EXTENDED_CONTENT)
    first_type = ext + 28 + _le(d, ext + 26, 2)  # after the object header, the count and the first name
    return [("ASF header size 2^63-1", put(d, 16, (2**63 - 1).to_bytes(8, "little")), ANY),
            ("ASF header object count 2^31-1", put(d, 24, b"\xff\xff\xff\x7f"), ANY),
            ("first header object size 0", put(d, 46, b"\0" * 8), ANY),
            ("file properties play duration 2^62", put(d, fp + 64, (2**62).to_bytes(8, "little")), ANY),
            ("file properties packet size 0", put(d, fp + 92, b"\0\0\0\0" * 2), ANY),
            ("data object size 2^63-1", put(d, end + 16, (2**63 - 1).to_bytes(8, "little")), ANY),
            ("extended content: first attribute of type 0x1000", put(d, first_type, b"\x00\x10"), ANY)]


def _id3_damage(d: bytes) -> list[tuple[str, bytes, str]]:
    _, end = _id3_marks(d)
    first = d.find(b"TIT2")
    tag = d[:end]
    return [("ID3 size 2^28-1 (past the end)", put(d, 6, b"\x7f\x7f\x7f\x7f"), ANY),
            ("ID3 size 0", put(d, 6, b"\0\0\0\0"), ANY),
            ("ID3 size not syncsafe (ff ff ff ff)", put(d, 6, b"\xff\xff\xff\xff"), ANY),
            ("ID3 size half the tag", put(d, 6, syncsafe((end - 10) // 2)), ANY),
            ("first ID3 frame size 2^28-1", put(d, 14, b"\x7f\x7f\x7f\x7f"), ANY),
            ("first ID3 frame size 0", put(d, 14, b"\0\0\0\0"), ANY),
            ("ID3 version 2.5", put(d, 3, b"\x05"), ANY),
            ("ID3 version 2.255", put(d, 3, b"\xff"), ANY),
            ("ID3 unsynchronisation flag on plain data", put(d, 5, b"\x80"), ANY),
            ("ID3 extended-header flag without one", put(d, 5, b"\x40"), ANY),
            ("ID3 footer flag without a footer", put(d, 5, b"\x10"), ANY),
            ("TIT2 encoding byte 7", put(d, first + 10, b"\x07"), ANY),
            ("TIT2 says UTF-16 without a BOM", put(d, first + 10, b"\x01"), ANY),
            ("two ID3 tags, one after the other", tag + d, ANY),
            ("ID3v1 tag of garbage at the end", d + b"TAG" + bytes(range(128, 253)), ANY)]


def _ape_damage(d: bytes) -> list[tuple[str, bytes, str]]:
    """An APEv2 tag (what mutagen writes) at the end of an MP3, its footer then damaged."""
    footer = len(d) - 32
    assert d[footer:footer + 8] == b"APETAGEX", "no APE footer"
    return [("APE footer size 2^32-1", put(d, footer + 12, b"\xff\xff\xff\xff"), ANY),
            ("APE footer size past the start of the file",
             put(d, footer + 12, (len(d) + 1000).to_bytes(4, "little")), ANY),
            ("APE footer size 0", put(d, footer + 12, b"\0\0\0\0"), ANY),
            ("APE footer item count 2^32-1", put(d, footer + 16, b"\xff\xff\xff\xff"), ANY),
            ("APE footer version 9999", put(d, footer + 8, (9999).to_bytes(4, "little")), ANY),
            ("APE footer flags claim a header there is not", put(d, footer + 20, b"\0\0\0\xa0"), ANY),
            ("APE first item value length 2^31", put(d, footer - _le(d, footer + 12, 4) + 32,
                                                     b"\0\0\0\x80"), ANY)]


# --- the builder ----------------------------------------------------------------------------------


class Builder:
    def __init__(self, folder: Path, seed: int = SEED) -> None:
        self.folder = folder
        self.root = folder / LIBRARY
        self.outside = folder / OUTSIDE
        self.rng = random.Random(seed)
        self.cases: list[Case] = []
        self.parents: dict[str, bytes] = {}

    def case(self, path: Path, cls: str, expect: str, note: str = "") -> Path:
        self.cases.append(Case(os.fsdecode(os.path.relpath(path, self.folder)), cls, expect, note))
        return path

    def write(self, rel: str, data: bytes, cls: str, expect: str, note: str = "") -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.case(path, cls, expect, note)

    def dir(self, rel: str) -> Path:
        d = self.root / rel
        d.mkdir(parents=True, exist_ok=True)
        return d

    # the classes, each in its own folder

    def good(self, corpus: Path | None) -> None:
        d = self.dir("good")
        for fmt, (ext, _) in FORMATS.items():
            self.parents[fmt] = encode(d / f"parent-{fmt}{ext}", fmt, PARENT_SECONDS, self.rng)
            self.case(d / f"parent-{fmt}{ext}", "good", TAGGED, f"{PARENT_SECONDS:g} s {fmt} with tags")
        extras: list[tuple[str, str, list[str], dict[str, object]]] = [
            ("alac.m4a", ".m4a", ["-c:a", "alac"], {}),
            ("id3v23-with-v1.mp3", ".mp3", ["-c:a", "libmp3lame", "-q:a", "6", "-id3v2_version", "3",
                                           "-write_id3v1", "1"], {}),
            ("hires-96k-24bit.flac", ".flac", ["-c:a", "flac", "-sample_fmt", "s32", "-ac", "2"],
             {"rate": 96_000}),
            ("six-channel.wav", ".wav", ["-c:a", "pcm_s16le", "-ac", "6"], {}),
            ("float32.wav", ".wav", ["-c:a", "pcm_f32le"], {}),
            ("8khz.mp3", ".mp3", ["-c:a", "libmp3lame", "-b:a", "16k"], {"rate": 8000}),
            ("no-tags.ogg", ".ogg", ["-c:a", "libvorbis"], {"tags": False}),
            ("stereo.opus", ".opus", ["-c:a", "libopus", "-ac", "2"], {}),
            ("UPPER.FLAC", ".FLAC", ["-c:a", "flac", "-f", "flac"], {}),
            ("1.2-seconds.wav", ".wav", ["-c:a", "pcm_s16le"], {"seconds": 1.2}),
        ]
        for name, _, args, kw in extras:
            seconds = float(kw.pop("seconds", 4.0))  # type: ignore[arg-type]
            encode(d / name, name, seconds, self.rng, args=args, **kw)  # type: ignore[arg-type]
            self.case(d / name, "good", TAGGED, " ".join(args))
        self.case(self._copy_with_genre(d), "good-has-genre", ANY, "already has a genre: left alone")
        if corpus is not None:
            self.from_corpus(corpus)

    def _copy_with_genre(self, d: Path) -> Path:
        out = d / "has-genre.flac"
        ffmpeg("-i", str(d / "parent-flac.flac"), "-metadata", "genre=Polka", "-c", "copy",
               "-fflags", "+bitexact", str(out))
        return out

    def from_corpus(self, corpus: Path) -> None:
        """Real music: a few files as they are, and cut and flipped copies of them."""
        found = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in
                       {".mp3", ".flac", ".ogg", ".opus", ".m4a", ".wav", ".aiff", ".wma"})
        picked = self.rng.sample(found, min(8, len(found)))
        d = self.dir("corpus")
        for i, src in enumerate(picked):
            out = d / f"real-{i}{src.suffix.lower()}"
            if src.stat().st_size < 4_000_000:
                shutil.copyfile(src, out)
            else:
                ffmpeg("-t", "30", "-i", str(src), "-map", "0", "-c", "copy", str(out))
            self.case(out, "good-corpus", TAGGED, f"from {src.name}")
            data = out.read_bytes()
            for k in range(3):
                at = self.rng.randrange(1, len(data))
                self.write(f"corpus/real-{i}-cut{k}{out.suffix}", data[:at], "truncated-corpus", ANY,
                           f"{src.name} cut at {at} of {len(data)} bytes")
                flipped, where = flip_bits(data, self.rng, 0, len(data), 4 ** k)
                self.write(f"corpus/real-{i}-flip{k}{out.suffix}", flipped, "bitflip-corpus", ANY,
                           f"{src.name} bits flipped at {where[:8]}")

    def truncated(self, per_format: int = 36) -> None:
        for fmt, (ext, _) in FORMATS.items():
            data = self.parents[fmt]
            marks, audio = structure(data, fmt)
            points: dict[int, str] = {}
            for p, name in marks:
                for delta in (-1, 0, 1):
                    if 0 < p + delta < len(data):
                        points.setdefault(p + delta, f"{name}{delta:+d}" if delta else name)
            for p in (1, 2, 4, 8, 16, 33):
                points.setdefault(p, "in the first bytes")
            for p in (len(data) - 1, len(data) - 2, len(data) - 17, len(data) - 513):
                points.setdefault(p, "near the end")
            chosen = sorted(points)
            if len(chosen) > per_format * 3 // 4:
                chosen = sorted(self.rng.sample(chosen, per_format * 3 // 4))
            while len(chosen) < per_format:
                p = self.rng.randrange(audio if len(chosen) % 3 else 1, len(data))
                if p not in chosen:
                    chosen.append(p)
                    points.setdefault(p, "in the audio" if p >= audio else "in the headers")
            for p in sorted(chosen):
                self.write(f"truncated/{fmt}/cut-{p:07d}{ext}", data[:p], f"truncated-{fmt}", ANY,
                           f"first {p} of {len(data)} bytes ({points[p]})")

    def bitflips(self) -> None:
        for fmt, (ext, _) in FORMATS.items():
            data = self.parents[fmt]
            _, audio = structure(data, fmt)
            for i, k in enumerate((1, 1, 2, 2, 4, 4, 8, 16)):
                flipped, where = flip_bits(data, self.rng, 0, audio, k)
                self.write(f"bitflip/{fmt}/header-{i}-{k}bits{ext}", flipped, f"bitflip-{fmt}", ANY,
                           f"{k} bits flipped in the first {audio} bytes (headers) at {where}")
            for i, k in enumerate((1, 2, 4, 8, 16, 32, 64, 256)):
                flipped, where = flip_bits(data, self.rng, audio, len(data), k)
                self.write(f"bitflip/{fmt}/audio-{i}-{k}bits{ext}", flipped, f"bitflip-{fmt}", ANY,
                           f"{k} bits flipped in the audio at {where[:8]}{'...' if k > 8 else ''}")

    def wrong_extensions(self) -> None:
        for fmt, data in self.parents.items():
            for other, (ext, _) in FORMATS.items():
                if other != fmt:
                    self.write(f"wrong-extension/{fmt}-named{ext}", data, "wrong-extension", ANY,
                               f"a {fmt} file named {ext}")

    def random_bytes(self) -> None:
        magics = {"mp3": b"ID3\x04\0\0\0\0\x01\0", "flac": b"fLaC", "ogg": b"OggS\0\x02",
                  "opus": b"OggS\0\x02" + b"\0" * 22 + b"OpusHead", "m4a": b"\0\0\0\x20ftypM4A ",
                  "wav": b"RIFF\xff\0\0\0WAVEfmt ", "aiff": b"FORM\0\0\xff\0AIFFCOMM", "wma": ASF_HEADER}
        for fmt, (ext, _) in FORMATS.items():
            for size in (100, 4096, 65_536, 300_000):
                self.write(f"random/{fmt}-{size}{ext}", self.rng.randbytes(size), "random-bytes", FAILED,
                           f"{size} random bytes")
            for size in (200, 50_000):
                self.write(f"random/{fmt}-magic-{size}{ext}", magics[fmt] + self.rng.randbytes(size),
                           "random-bytes-after-magic", ANY, f"{fmt} magic, then {size} random bytes")

    def tiny(self) -> None:
        for fmt, (ext, _) in FORMATS.items():
            self.write(f"tiny/empty{ext}", b"", "tiny", FAILED, "0 bytes")
            self.write(f"tiny/one-byte{ext}", self.parents[fmt][:1], "tiny", FAILED, "its first byte")
            _, audio = structure(self.parents[fmt], fmt)
            self.write(f"tiny/header-only-{fmt}{ext}", self.parents[fmt][:audio], "tiny", FAILED,
                       f"the first {audio} bytes: headers, no audio")

    def silent_and_short(self) -> None:
        d = self.dir("silent")
        for fmt, (ext, _) in FORMATS.items():
            self.case(d / f"silence-{fmt}{ext}", "silent", FAILED, "5 s of digital silence")
            encode(d / f"silence-{fmt}{ext}", fmt, 5.0, self.rng, silent=True)
        for fmt in ("flac", "mp3", "ogg", "wav"):
            ext = FORMATS[fmt][0]
            encode(d / f"hiss-minus100dB-{fmt}{ext}", fmt, 5.0, self.rng, amp=1e-5)
            self.case(d / f"hiss-minus100dB-{fmt}{ext}", "near-silent", ANY, "a tone at -100 dBFS")
        d = self.dir("short")
        for fmt, (ext, _) in FORMATS.items():
            for seconds in (0.1, 0.5):
                encode(d / f"{seconds}s-{fmt}{ext}", fmt, seconds, self.rng)
                self.case(d / f"{seconds}s-{fmt}{ext}", "very-short", FAILED, f"{seconds} s of audio")
            encode(d / f"1.5s-{fmt}{ext}", fmt, 1.5, self.rng)
            self.case(d / f"1.5s-{fmt}{ext}", "short", TAGGED, "1.5 s of audio")

    def long(self) -> None:
        d = self.dir("long")
        encode(d / "thirty-minutes.mp3", "mp3", 1800, self.rng, rate=8000,
               args=["-c:a", "libmp3lame", "-b:a", "8k"])
        self.case(d / "thirty-minutes.mp3", "long", TAGGED, "30 min, 8 kbit/s mp3")
        encode(d / "twenty-minutes.opus", "opus", 1200, self.rng, rate=8000,
               args=["-c:a", "libopus", "-b:a", "6k"])
        self.case(d / "twenty-minutes.opus", "long", TAGGED, "20 min, 6 kbit/s opus")

    def odd_names(self) -> None:
        d = self.dir("names")
        r = os.fsencode(d)
        names: list[bytes] = [
            b"caf\xe9.mp3", b"\xff\xfe.flac", b"bad\x80\x81 bytes.ogg", b"latin1 \xe0\xe9\xee\xf5.wav",
            b"new\nline.mp3", b"tab\there.wav", b"carriage\rreturn.m4a", b"\x7fdelete.opus",
            b"esc\x1b[31mred\x1b[0m.mp3", b"\x1b]0;window title\x07.wav", b"bell\x07.flac",
            b"\x1b[2J\x1b[Hclear.ogg", b"[live] set.flac", b"[bold red]x.ogg",
            b"[link=file:]click[reset].wav", b"-rf.mp3", b"--help.wav", b"-.flac", b"--.ogg",
            b"-n.m4a", b" leading space.mp3", b"trailing space .flac", b"  .wav", b"two  spaces.ogg",
            b"%s%n%x.mp3", b"$(touch pwned).wav", b"`id`.flac", b"*?.ogg", b"quote'\"s.mp3",
            b"back\\slash.wav", b"semi;colon,comma.flac", b"\xe2\x80\xaeevil3pm.wav",
            b"zero\xe2\x80\x8bwidth.mp3", b"\xf0\x9f\x8e\xb5 emoji.flac", b"mixed.FlAc",
            b"a" * 251 + b".mp3", "é".encode() * 125 + b".flac", b"x" * 250 + b".opus",
        ]
        for word in ("Café", "Ångström", "\ufb01sh", "\uff26\uff55\uff4c\uff4c"):  # fi ligature, fullwidth
            for form in ("NFC", "NFD", "NFKC", "NFKD"):
                name = unicodedata.normalize(form, word).encode() + f"-{form}.mp3".encode()
                if name not in names:
                    names.append(name)
        fmts = list(FORMATS)
        for i, name in enumerate(names):
            ext = os.path.splitext(name)[1].decode().lower()
            fmt = next((f for f in fmts if FORMATS[f][0] == ext), "wav")
            path = Path(os.fsdecode(os.path.join(r, name)))
            encode(path, fmt, 2.0 + i % 3, self.rng)
            self.case(path, "odd-name", TAGGED, repr(name))
        for folder in (b"[", b"dir\xff[", b"a[", b"-folder", b"new\nline folder"):  # "[" + "/x].wav"
            sub = Path(os.fsdecode(os.path.join(r, folder)))
            sub.mkdir()
            path = sub / "x].wav"
            encode(path, "wav", 2.0, self.rng)
            self.case(path, "odd-folder-name", TAGGED, f"in folder {folder!r}")

    def hidden_and_ignored(self) -> None:
        d = self.dir("hidden")
        shutil.copyfile(self.root / "good/parent-mp3.mp3", d / ".hidden.mp3")
        self.case(d / ".hidden.mp3", "hidden", HIDDEN, "a name starting with a dot")
        hid = self.dir("hidden/.folder")
        shutil.copyfile(self.root / "good/parent-flac.flac", hid / "in-hidden-folder.flac")
        self.case(hid / "in-hidden-folder.flac", "hidden", HIDDEN, "in a folder starting with a dot")
        for name in ("notes.txt", "cover.jpg", "track.mp3.part", "noext"):
            self.write(f"hidden/{name}", self.parents["mp3"], "not-audio-name", IGNORED,
                       "an mp3 without an audio extension")

    def unreadable(self) -> None:
        for fmt, (ext, _) in FORMATS.items():
            p = self.write(f"unreadable/mode000-{fmt}{ext}", self.parents[fmt], "unreadable-file", FAILED,
                           "mode 000")
            p.chmod(0)
        for name, mode in (("locked-000", 0o000), ("search-only-111", 0o111), ("list-only-444", 0o444)):
            d = self.dir(f"unreadable/{name}")
            inner = IN_UNREADABLE
            for fmt in ("mp3", "flac"):
                self.write(f"unreadable/{name}/inside{FORMATS[fmt][0]}", self.parents[fmt],
                           "in-unreadable-folder", inner, f"in a folder of mode {mode:03o}")
            self.case(d, "unreadable-folder", FOLDER, f"mode {mode:03o}")
            d.chmod(mode)

    def specials(self) -> None:
        d = self.dir("special")
        for name in ("fifo.mp3", "fifo.flac", "fifo.wav"):
            os.mkfifo(d / name)
            self.case(d / name, "fifo", NOT_REGULAR, "a FIFO with no writer")
        links: list[tuple[str, str, str, str]] = [
            ("to-dev-zero.mp3", "/dev/zero", NOT_REGULAR, "symlink to /dev/zero"),
            ("to-dev-null.flac", "/dev/null", NOT_REGULAR, "symlink to /dev/null"),
            ("to-dev-urandom.wav", "/dev/urandom", NOT_REGULAR, "symlink to /dev/urandom"),
            ("dangling.mp3", "does-not-exist.mp3", NOT_REGULAR, "dangling symlink"),
            ("self-loop.mp3", "self-loop.mp3", SKIP_OR_FAIL, "symlink to itself"),
            ("loop-a.flac", "loop-b.flac", SKIP_OR_FAIL, "two symlinks to each other"),
            ("loop-b.flac", "loop-a.flac", SKIP_OR_FAIL, "two symlinks to each other"),
            ("to-folder.mp3", ".", NOT_REGULAR, "a symlink named .mp3 to its own folder"),
            ("to-good.ogg", "../good/parent-ogg.ogg", ANY, "symlink to a good file in the library"),
        ]
        for name, target, expect, note in links:
            os.symlink(target, d / name)
            self.case(d / name, "symlink", expect, note)
        self.outside.mkdir(parents=True, exist_ok=True)
        target = self.outside / "outside-target.flac"
        target.write_bytes(self.parents["flac"])
        self.case(target, "outside-target", OUTSIDE_TARGET, "what library/special/to-outside.flac points to")
        os.symlink(target, d / "to-outside.flac")
        self.case(d / "to-outside.flac", "symlink", OUTSIDE_ROOTS, "symlink to a file outside the root")
        (self.outside / "folder").mkdir()
        inner = self.outside / "folder" / "outside-via-folder-link.mp3"
        inner.write_bytes(self.parents["mp3"])
        self.case(inner, "outside-target", OUTSIDE_ROOTS, "reached through library/special/outside-folder")
        os.symlink(self.outside / "folder", d / "outside-folder")
        self.case(d / "outside-folder", "folder-link", FOLDER_LINK, "link to a folder outside the root")
        os.symlink("..", d / "loop-to-parent")
        self.case(d / "loop-to-parent", "folder-link", FOLDER_LINK, "link to its parent: a loop, walked once")

    def damaged(self) -> None:
        mp3 = self.parents["mp3"]
        moov_last = encode(self.folder / "_moov-last.m4a", "m4a", PARENT_SECONDS, self.rng,
                           args=["-c:a", "aac", "-b:a", "48k"])
        (self.folder / "_moov-last.m4a").unlink()
        ape = self.folder / "_ape.mp3"
        ape.write_bytes(mp3)
        from mutagen.apev2 import APEv2

        tag = APEv2()
        tag["Title"], tag["Artist"] = "Señor APE", "The Fixtures"
        tag.save(ape)
        with_ape = ape.read_bytes()
        ape.unlink()
        groups: dict[str, tuple[str, list[tuple[str, bytes, str]]]] = {
            "damaged-m4a": (".m4a", _m4a_damage(self.parents["m4a"], moov_last)),
            "damaged-wav": (".wav", _wav_damage(self.parents["wav"])),
            "damaged-aiff": (".aiff", _aiff_damage(self.parents["aiff"])),
            "damaged-id3": (".mp3", _id3_damage(mp3)),
            "damaged-ape": (".mp3", [("intact APEv2 tag after the audio", with_ape, TAGGED),
                                     *_ape_damage(with_ape)]),
            "damaged-flac": (".flac", _flac_damage(self.parents["flac"])),
            "damaged-ogg": (".ogg", _ogg_damage(self.parents["ogg"], "ogg")),
            "damaged-opus": (".opus", _ogg_damage(self.parents["opus"], "opus")),
            "damaged-wma": (".wma", _wma_damage(self.parents["wma"])),
        }
        for cls, (ext, variants) in groups.items():
            for i, (what, data, expect) in enumerate(variants):
                slug = "".join(c if c.isalnum() else "-" for c in what.lower()).strip("-")[:60]
                self.write(f"damaged/{cls}/{i:02d}-{slug}{ext}", data, cls, expect, what)


def build(folder: Path, corpus: Path | None = None) -> list[Case]:
    """Build every bad input under ``folder`` (``folder/library`` is the root to scan)."""
    b = Builder(folder)
    b.root.mkdir(parents=True, exist_ok=True)
    b.good(corpus)
    b.truncated()
    b.bitflips()
    b.wrong_extensions()
    b.random_bytes()
    b.tiny()
    b.silent_and_short()
    b.long()
    b.odd_names()
    b.hidden_and_ignored()
    b.specials()
    b.damaged()
    b.unreadable()  # last: the folders it locks are not written to again
    return b.cases


def restore_modes(folder: Path) -> None:
    """Make everything readable again, so the build folder can be hashed and removed."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                os.chmod(p, 0o755)
            elif stat.S_ISREG(st.st_mode) and not st.st_mode & 0o400:
                os.chmod(p, 0o644)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python tests/badinputs.py OUT_FOLDER", file=sys.stderr)
        return 2
    out = Path(argv[1])
    corpus = os.environ.get("GENRE_TAGGER_CORPUS")
    cases = build(out, Path(corpus) if corpus else None)
    for c in cases:
        print(f"{c.cls}\t{c.expect}\t{c.path!a}\t{c.note}")
    for cls, n in sorted(Counter(c.cls for c in cases).items()):
        print(f"{cls}: {n}", file=sys.stderr)
    print(f"{len(cases)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
