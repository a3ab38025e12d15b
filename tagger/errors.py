"""Typed errors: each names the file and says, in words, what is wrong with it.

``code`` is a short stable token (stored in the cache, counted in summaries); ``str(error)`` is
the line a person reads.
"""

from __future__ import annotations

from pathlib import Path


class TaggerError(Exception):
    """Base of every error genre-tagger reports instead of crashing."""


class AudioError(TaggerError):
    """A file could not be analysed."""

    code = "audio-error"

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class MissingFile(AudioError):
    code = "missing"


class NoPermission(AudioError):
    code = "permission"


class NotAudio(AudioError):
    code = "not-audio"


class CorruptAudio(AudioError):
    code = "corrupt"


class TruncatedAudio(AudioError):
    code = "truncated"


class EmptyAudio(AudioError):
    code = "empty"


class SilentAudio(AudioError):
    code = "silent"


class TooShort(AudioError):
    code = "too-short"


class DecodeTimeout(AudioError):
    code = "timeout"


class DecoderCrashed(AudioError):
    code = "decoder-crashed"


class DecoderMissing(TaggerError):
    """No usable decoder is installed (ffmpeg not on PATH)."""
