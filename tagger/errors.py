"""Every error genre-tagger reports instead of crashing, in one place (as httpx's
``_exceptions.py``). Each says in words what is wrong, and blames the right thing: a file, the
machine, or what a person gave it.

::

    TaggerError
    +-- AudioError              a file could not be analysed (code: stored, counted, retried by)
    |   +-- MissingFile, NoPermission, NotAudio, CorruptAudio, TruncatedAudio, EmptyAudio,
    |       SilentAudio, TooShort, DecodeTimeout, DecoderCrashed
    +-- TagError                a file's tags could not be read or written; it is left as it was
    +-- EnvironmentProblem      the machine is at fault, never recorded against a file
    |   +-- DecoderMissing      no ffmpeg on PATH
    +-- CacheUnavailable        the cache database cannot be opened (missing, damaged, a driver...)
    +-- ConfigError             a configuration key or value is wrong
    +-- ModelFileError          a model file cannot be used
    +-- LabelError              training labels cannot be used as given
    +-- TrainingError           training cannot go on
    |   +-- LearningMoved       learning: another decision was recorded meanwhile
    +-- NoTimeline              ``show --plot``: the file cannot be analysed
    +-- PageUnavailable         the page cannot be served

    PermissionError
    +-- NotUnderRoots           a file looked for under the roots is not one there (open_under)

``code`` is a short stable token (stored in the cache, counted in summaries); ``str(error)`` is
the line a person reads.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, Literal

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def install_hint(extra: str) -> str:
    """How to add an optional part. genre-tagger is installed from its folder (it is not on
    PyPI), so the hint names the extra the way pip takes it there."""
    return f'pip install ".[{extra}]" in the genre-tagger folder you installed from'


def one_line(text: str) -> str:
    """Collapse newlines and control characters: a reason is printed, logged and stored as one line."""
    return " ".join(_CONTROL.sub(" ", text).split())


def first_line(e: BaseException) -> str:
    """An exception's first line (drivers and Ray put tracebacks and hints after it)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


#: Every reason code a file (or a folder the walk could not read) can end with: stored in the
#: cache, counted in summaries, matched by the daemon's retry rules.
Code = Literal[
    # analysis (the file's audio)
    "audio-error", "missing", "permission", "not-audio", "corrupt", "truncated", "empty", "silent",
    "too-short", "timeout", "decoder-crashed", "internal-error",
    # the page draws only what the cache kept
    "not-kept",
    # tags (writing the genres)
    "tag-error", "unsupported-format", "bad-tags", "read-only", "disk-full", "write-error",
    "not-a-file", "changed", "busy", "unsafe-rewrite", "hard-linked", "xattrs", "filesystem",
    # the library
    "outside-roots", "unreadable-folder",
]


class TaggerError(Exception):
    """Base of every error genre-tagger reports instead of crashing."""


class AudioError(TaggerError):
    """A file could not be analysed."""

    code: ClassVar[Code] = "audio-error"

    def __init__(self, path: str | Path, reason: str) -> None:
        reason = one_line(reason)
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class MissingFile(AudioError):
    code: ClassVar[Code] = "missing"


class NoPermission(AudioError):
    code: ClassVar[Code] = "permission"


class NotAudio(AudioError):
    code: ClassVar[Code] = "not-audio"


class CorruptAudio(AudioError):
    code: ClassVar[Code] = "corrupt"


class TruncatedAudio(AudioError):
    code: ClassVar[Code] = "truncated"


class EmptyAudio(AudioError):
    code: ClassVar[Code] = "empty"


class SilentAudio(AudioError):
    code: ClassVar[Code] = "silent"


class TooShort(AudioError):
    code: ClassVar[Code] = "too-short"


class DecodeTimeout(AudioError):
    code: ClassVar[Code] = "timeout"


class DecoderCrashed(AudioError):
    code: ClassVar[Code] = "decoder-crashed"


class EnvironmentProblem(TaggerError):
    """The machine is at fault, not the file (no working ffmpeg, out of memory, too many open files).

    Raised out of the engine instead of becoming a per-file failure: recording it against each
    file would cache the machine's problem as the file's fault.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class DecoderMissing(EnvironmentProblem):
    """No usable decoder is installed (ffmpeg not on PATH)."""


class TagError(TaggerError):
    """A file's tags could not be read or written; the file is left as it was.

    ``code`` is a short stable token stored in the cache and counted in summaries.
    """

    def __init__(self, path: str | Path, reason: str, code: Code = "tag-error") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.code = code


class CacheUnavailable(TaggerError):
    """The cache database cannot be opened (a machine's problem, never a file's).

    ``problem`` names the two cases a front door may want to say more about: ``"missing"``
    (no SQLite file at ``path``, and the cache was opened with ``create=False``) and
    ``"damaged"`` (the SQLite file at ``path`` is not a database, or a damaged one); None for
    anything else (a driver, a server, permissions...). ``detail``: the database's own words."""

    def __init__(self, message: str, problem: Literal["missing", "damaged"] | None = None,
                 path: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.problem = problem
        self.path = path
        self.detail = detail


class ConfigError(TaggerError):
    """A configuration key or value is wrong; the message names it and says why."""


class ModelFileError(TaggerError):
    """A model file that cannot be used; the message says why in plain words."""


class LabelError(TaggerError):
    """The labels cannot be used as given (no such folder, an unreadable CSV, too few files)."""


class TrainingError(TaggerError):
    """Training cannot go on (too few usable files, ...); the message says why."""


class LearningMoved(TrainingError):
    """Another learning decision was recorded for the setting since a round looked (a ``learn
    --back``, or another process): the round's own is not recorded."""


class NoTimeline(TaggerError):
    """``show --plot``: the file cannot be analysed (the reason says why)."""


class PageUnavailable(TaggerError):
    """The page cannot be served: its extra is not installed, or its address cannot be had."""


class NotUnderRoots(PermissionError):
    """:func:`tagger.tags.safe_write.open_under`: what the name leads to is not a regular file
    under the roots. A PermissionError (a caller that only refuses needs nothing more), with
    the reason in ``strerror`` and a ``code`` for the cache."""

    def __init__(self, path: str, reason: str, code: Code) -> None:
        super().__init__(errno.EACCES, reason, path)
        self.code: Code = code

    def __reduce__(self) -> tuple[type[NotUnderRoots], tuple[str, str, Code]]:
        # (OSError pickles as its errno, strerror and filename, which are not these arguments)
        return type(self), (str(self.filename), str(self.strerror), self.code)


#: Errors of the machine, not of a file: running out of descriptors, memory or processes.
MACHINE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})


@contextmanager
def os_errors(path: Path, doing: str) -> Iterator[None]:
    """Turn the OS's reasons for not reaching a file into typed, worded errors."""
    try:
        yield
    except FileNotFoundError:
        raise MissingFile(path, "no such file") from None
    except PermissionError:
        raise NoPermission(path, f"permission denied (cannot {doing} the file)") from None
    except IsADirectoryError:
        raise NotAudio(path, "is a directory") from None
    except OSError as e:
        if e.errno in MACHINE_ERRNOS:
            raise EnvironmentProblem(f"cannot {doing} {path}: {e.strerror} (this machine is out of "
                                     "resources; the file is not at fault)") from None
        raise CorruptAudio(path, f"cannot {doing} the file: {e.strerror or e}") from None
