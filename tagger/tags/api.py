"""The dispatcher: pick the format module for a file, read or (safely) write its genres.

A write is verified before it replaces anything: the edited copy is read back and must hold the
genres written, every other tag and picture as before (as mutagen reads them), and the same
audio payload (:func:`tagger.formats.identity.audio_identity`). Files whose tags mutagen cannot rewrite
faithfully (each format module's ``problem``) are refused up front. A refusal leaves the
original untouched and says ``cannot safely rewrite the tags: REASON``.
"""

from __future__ import annotations

import errno
import io
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import mutagen
from mutagen.aiff import AIFF
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE

from tagger.errors import NotUnderRoots, TagError
from tagger.formats.identity import audio_identity, located
from tagger.formats.kinds import KINDS, UNSUPPORTED, extensions_of, format_name, mutagen_types
from tagger.formats.sniff import sniff
from tagger.tags import asf, id3, mp4, vorbis
from tagger.tags.base import FormatModule, TagOptions, unsafe
from tagger.tags.id3 import raw_frames
from tagger.tags.safe_write import open_under, replace_atomically


def _module(f: Any, path: Path) -> FormatModule:
    if isinstance(f, (MP3, WAVE, AIFF)):
        return id3
    if isinstance(f, (FLAC, OggVorbis, OggOpus, OggSpeex, OggFLAC)):
        return vorbis
    if isinstance(f, MP4):
        return mp4
    if isinstance(f, ASF):
        return asf
    raise TagError(path, f"not supported: {format_name(path, type(f).__name__)} (genre-tagger "
                              "cannot write its tags yet)", "unsupported-format")


def _open(path: Path, for_write: bool = False, held: BinaryIO | None = None) -> Any:
    """The file as mutagen reads it; when mutagen, led by the file's name, picks a format the
    content is not (a FLAC named .mp3), the format the content says is tried before giving up.
    ``held``: the file, open already (:func:`held_open`); read from it, not by name."""
    try:
        return _open_as(path, for_write, held=held)
    except TagError as e:
        if e.code not in ("bad-tags", "unsupported-format"):
            raise
        try:
            kind = sniff(path, held)
        except Exception:
            raise e from None
        # the content's own classes: for a misnamed file, or one mutagen did not recognise by
        # its (right) name (a .3g2 is MP4 inside)
        if kind is None or not KINDS[kind].tagged:
            raise
        named_right = path.suffix.lower() in extensions_of(kind)
        if named_right and e.code != "unsupported-format":
            raise
        try:
            return _open_as(path, for_write, mutagen_types(kind), held)
        except TagError:
            if named_right:
                raise e from None
            raise TagError(path, f"the extension {path.suffix or '(none)'} does not match the "
                                      f"content ({kind}), and its tags cannot be read as {kind} "
                                      "either", e.code) from None


def _open_as(path: Path, for_write: bool = False, options: list[Any] | None = None,
             held: BinaryIO | None = None) -> Any:
    source: Path | BinaryIO = path
    if held is not None:  # (its name is the path's: mutagen weighs the extension)
        assert not for_write, "a write reopens by name: it must never be given a held file"
        held.seek(0)
        source = held
    try:
        f = mutagen.File(source, options=options) if options else mutagen.File(source)
        if for_write and isinstance(f, MP3):
            f = MP3(path, load_v1=False)  # see tagger.tags.id3.write
    except mutagen.MutagenError as e:
        cause = e.args[0] if e.args else e
        if isinstance(cause, FileNotFoundError):
            raise TagError(path, "no such file", "missing") from None
        if isinstance(cause, PermissionError):
            raise TagError(path, "permission denied", "permission") from None
        raise TagError(path, f"its tags are damaged and cannot be read ({_words(e, path)})",
                            "bad-tags") from None
    except FileNotFoundError:
        raise TagError(path, "no such file", "missing") from None
    except PermissionError:
        raise TagError(path, "permission denied", "permission") from None
    except Exception as e:  # mutagen raises whatever a malformed header makes it raise
        raise TagError(path, f"its tags are damaged and cannot be read ({_words(e, path)})",
                            "bad-tags") from None
    if f is None:
        name = UNSUPPORTED.get(path.suffix.lower())
        raise TagError(path, f"not supported: {name} (genre-tagger cannot write its tags yet)"
                            if name else "not an audio format whose tags genre-tagger can write",
                            "unsupported-format")
    return f


def _words(e: BaseException, path: Path) -> str:
    """mutagen's message, without the file's name (the line names it already), Python's codec
    or struct jargon, or Python's exception names; never empty."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text.replace(f"{str(path)!r} ", "").replace(str(path), "the file").strip(" :")
    if "codec can't" in text:
        return "text in the tag is not valid in its encoding"
    if not text or isinstance(e, (KeyError, IndexError, struct.error, TypeError, AttributeError)) \
            or "format requires" in text or "must be non-negative" in text:
        return "a size or type field in the tag is out of range"
    return text


def read_genres(path: str | Path, options: TagOptions | None = None,
                held: BinaryIO | None = None) -> list[str]:
    """The genres the file has now, in its own order ([] when none); from ``held`` when the
    caller opened and checked the file (:func:`held_open`).

    ID3v2.3 frames are split on ``options.id3v23_separator``: what we joined on write.
    """
    path = Path(path)
    f = _open(path, held=held)
    module = _module(f, path)
    try:
        return module.read(f, options or TagOptions())
    except Exception as e:
        raise TagError(path, f"its tags are damaged and cannot be read ({_words(e, path)})",
                            "bad-tags") from None


@contextmanager
def held_open(path: str | Path, under: tuple[str, ...] | None) -> Iterator[BinaryIO]:
    """The file at ``path``, opened only if it is a regular file under the real roots
    ``under`` (None: anywhere) (:func:`~tagger.tags.safe_write.open_under`), else TagError.
    Read tags from what this yields: a link swapped in after the check, or a FIFO, is never
    what is read (opening a FIFO waits for a writer forever)."""
    try:
        fd = open_under(str(path), under)
    except NotUnderRoots as e:
        raise TagError(path, e.strerror or "not allowed", e.code) from None
    except FileNotFoundError:
        raise TagError(path, "no such file", "missing") from None
    except PermissionError:
        raise TagError(path, "permission denied", "permission") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # a folder on the way became a link or file
            raise TagError(path, "it changed while it was opened (a folder on its path was "
                                 "replaced); not read", "changed") from None
        raise TagError(path, f"cannot open it: {e.strerror or e}") from None
    try:
        raw = io.FileIO(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    raw.name = str(path)  # what mutagen weighs formats by (".mp3")
    with io.BufferedReader(raw) as fh:
        yield fh


def genres_or_reason(path: str | Path, options: TagOptions,
                     under: tuple[str, ...] | None = None) -> tuple[list[str] | None, str | None]:
    """``(genres, None)``, or ``(None, why they cannot be read)``: for views (``show``, the
    page) that say what a file carries and go on. With ``under`` (real roots), only a regular
    file under them is read (:func:`held_open`)."""
    try:
        with held_open(path, under) if under is not None else nullcontext(None) as fh:
            return read_genres(path, options, fh), None
    except TagError as e:
        return None, e.reason


def read_album(path: str | Path) -> tuple[str, str]:
    """``(album, album artist)`` as tagged, "" where absent (first values, spaces trimmed)."""
    path = Path(path)
    f = _open(path)
    keys = _module(f, path).ALBUM_KEYS
    tags = f.tags

    def first(key: str) -> str:
        try:
            value = tags.get(key) if tags is not None else None
        except Exception:  # a damaged frame: as if absent
            return ""
        value = getattr(value, "text", value)  # ID3 frames hold a list in .text
        if isinstance(value, (list, tuple)):
            value = value[0] if value else ""
        return str(value or "").strip()

    return first(keys[0]), first(keys[1])


_V23_TRANSLATED = frozenset({"TYER", "TDAT", "TIME", "TRDA", "TORY", "IPLS", "TDRC", "TDOR",
                             "TIPL", "TMCL"})


def _changed_frames(before: tuple[int, list[tuple[str, bytes]]] | None,
                    after: tuple[int, list[tuple[str, bytes]]] | None) -> list[str]:
    """ID3 frames whose stored bytes a rewrite in the same version would change. mutagen reads
    a damaged frame its own way (UTF-16 without a byte order mark, a size that swallows the
    frames after it) and writes that reading back: equal as mutagen sees them, not as players do.
    A deliberate version change (``--id3v23``) re-encodes frames, so it is not compared."""
    if before is None or after is None or before[0] != after[0]:
        return []
    # v2.3 dates and people lists go through v2.4 frames on the way (mutagen translates them on
    # load and back on save): compared as mutagen reads them (``others``), not as bytes.
    skip = _V23_TRANSLATED if before[0] == 3 else frozenset()
    old = sorted(fr for fr in before[1] if fr[0] not in skip)
    new = sorted(fr for fr in after[1] if fr[0] not in skip)
    gone = [fid for fid, data in old if (fid, data) not in new]
    return gone or [fid for fid, data in new if (fid, data) not in old]


def _differs(before: list[tuple[str, str]], after: list[tuple[str, str]]) -> str:
    a, b = dict(before), dict(after)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return key
    return "the order of the tags"


class _Rewrite(io.FileIO):
    """The copy as mutagen saves into it. Mutagen truncates after every save, mostly to the
    size the file already has; some FUSE drivers (fusefat) refuse exactly that (EPERM), which
    blamed the tags on a FAT stick. Refused, a truncate that would change nothing is done."""

    def truncate(self, size: int | None = None) -> int:
        size = self.tell() if size is None else size
        try:
            return super().truncate(size)
        except PermissionError:
            here = self.tell()
            end = self.seek(0, os.SEEK_END)
            self.seek(here)
            if end != size:
                raise
            return size


def write_genres(path: str | Path, genres: list[str], options: TagOptions | None = None,
                 expect: os.stat_result | None = None,
                 roots: tuple[str, ...] | None = None) -> os.stat_result:
    """Replace the file's genres with ``genres`` ([] removes them), crash-safely and verified.

    ``expect``: the file's stat when it was analysed; a file that changed since is not written.
    ``roots``: real folders the file must lie in when it is written (whatever links anyone
    swaps in on the way meanwhile).
    Returns the stat of the rewritten file.
    """
    options = options or TagOptions()
    path = Path(path)
    genres = list(genres)
    if roots is None:
        original = _open(path)
    else:  # read from the file found under the roots (a FIFO swapped in is never opened)
        with held_open(path, roots) as fh:
            original = _open(path, held=fh)
    module = _module(original, path)
    # The copy is opened as exactly what the original was read as: its name (/proc/self/fd/N)
    # has no extension to guide mutagen (a FLAC behind an ID3 header would read as MP3).
    kind = [type(original)]

    def reopen(tmp: Path, for_write: bool = False) -> Any:
        # The class itself, not mutagen's guess: without an extension an MP3 with no ID3v2
        # header scores 0 and would read as "not an audio format".
        try:
            if for_write and kind[0] is MP3:
                return MP3(tmp, load_v1=False)  # see tagger.tags.id3.write
            return kind[0](tmp)
        except Exception as e:
            raise TagError(path, f"its tags are damaged and cannot be read ({_words(e, tmp)})",
                                "bad-tags") from None

    def edit(tmp: Path) -> None:
        f = reopen(tmp)
        why = module.problem(tmp, f)
        if why:
            raise unsafe(path, why)
        audio = audio_identity(tmp)
        if not located(audio):
            raise unsafe(path, "the audio data cannot be located in the file (the container is "
                               "damaged or unknown), so the rewrite could not be checked")
        kept = module.others(f)
        raw = raw_frames(tmp, f)
        try:
            with _Rewrite(tmp, "r+") as into:
                module.write(reopen(tmp, for_write=True), genres, options, into)
        except (TagError, OSError):
            raise
        except Exception as e:  # mutagen cannot serialise what it read (a size out of range...)
            raise unsafe(path, f"mutagen cannot write them back ({_words(e, tmp)})") from None
        f = reopen(tmp)
        changed = _changed_frames(raw, raw_frames(tmp, f))
        if changed:
            raise unsafe(path, f"the rewrite would change the ID3 frame {changed[0]} "
                               "(it is damaged or not stored as mutagen would store it)")
        if [g.strip() for g in module.read(f, options)] != [g.strip() for g in genres if g.strip()]:
            raise unsafe(path, "the genres read back differ from those written")
        now = module.others(f)
        if now != kept:
            raise unsafe(path, f"the rewrite would change {_differs(kept, now)}")
        if audio_identity(tmp) != audio:
            raise unsafe(path, "the rewrite would change the audio data")

    return replace_atomically(path, edit, keep_mtime=options.keep_mtime, expect=expect,
                              hard_links=options.hard_links, roots=roots)
