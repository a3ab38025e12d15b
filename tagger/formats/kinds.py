"""The one table of formats: the kinds :func:`tagger.formats.sniff.sniff` names, their file name
extensions, who reads them, whether genre-tagger tags them; and the extensions a library walk
picks up, with the names of those it finds but cannot tag."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Kind:
    container: bool  # a container whose structure can be damaged, or a bare stream of frames
    extensions: frozenset[str]  # every name it goes by (a name outside: "does not match")
    sndfile: bool  # libsndfile reads it too (the fallback decoder)
    tagged: bool  # genre-tagger writes its tags (tagger.tags.api opens it by content)


KINDS = {
    "MP3": Kind(False, frozenset({".mp3", ".mp2", ".mpa", ".mpga"}), True, True),
    "FLAC": Kind(False, frozenset({".flac", ".fla"}), True, True),
    "Ogg": Kind(True, frozenset({".ogg", ".oga", ".opus", ".spx", ".ogx"}), True, True),
    "WAV": Kind(True, frozenset({".wav", ".wave", ".bwf"}), True, True),
    "MP4": Kind(True, frozenset({".m4a", ".m4b", ".m4p", ".mp4", ".3gp", ".3g2", ".mov",
                                 ".alac"}), False, True),
    "AIFF": Kind(True, frozenset({".aif", ".aiff", ".aifc"}), True, True),
    "WMA": Kind(True, frozenset({".wma", ".asf", ".wmv"}), False, True),
    "AAC": Kind(False, frozenset({".aac", ".adts"}), False, False),
}

#: Formats people keep that mutagen or ffmpeg know but genre-tagger cannot tag (yet): named in
#: the report as "not supported: FORMAT" (analysed all the same: predict, show and beets,
#: which writes APEv2 itself, use the scores).
UNSUPPORTED = {".wv": "WavPack", ".ape": "Monkey's Audio", ".mpc": "Musepack", ".tak": "TAK",
               ".tta": "TrueAudio", ".ofr": "OptimFROG", ".ofs": "OptimFROG",
               ".dsf": "DSD (DSF)", ".dff": "DSD (DSDIFF)", ".ac3": "AC-3", ".eac3": "E-AC-3"}

#: The extensions a library walk picks up (every container ffmpeg decodes that music comes in,
#: the untaggable ones of :data:`UNSUPPORTED` included, so a person learns why they have no
#: genres); names video and rarer aliases use (.mov, .wmv, .mp2, ...) are left out.
LIBRARY_EXTENSIONS = frozenset({".mp3", ".flac", ".ogg", ".oga", ".opus", ".spx", ".m4a", ".mp4",
                                ".m4b", ".3gp", ".3g2", ".aac", ".alac", ".wav", ".aif", ".aiff",
                                ".aifc", ".wma", ".asf", *UNSUPPORTED})

#: Names libsndfile is tried on when the content says no kind (the fallback decoder's guess).
SNDFILE_EXTENSIONS = frozenset({".ogg", ".oga", ".flac", ".wav", ".aif", ".aiff", ".mp3", ".opus"})


def extensions_of(kind: str) -> frozenset[str]:
    """The file name extensions of a kind (``"FLAC"`` -> ``.flac``, ...); none for an unknown one."""
    return KINDS[kind].extensions if kind in KINDS else frozenset()


def label(kind: str, path: Path) -> str:
    """What to call the kind in a message: the M4A of an ``.m4a`` file, not "MP4"."""
    ext = path.suffix.lower()
    return ext[1:].upper() if kind == "MP4" and ext in KINDS["MP4"].extensions else kind


def format_name(path: Path, fallback: str) -> str:
    """The name of a format genre-tagger cannot tag, by the file's extension."""
    return UNSUPPORTED.get(path.suffix.lower(), fallback)


def mutagen_types(kind: str) -> list[Any]:
    """mutagen's classes for a kind: the content decides the parser, not the name (a FLAC
    called .mp3 is read as FLAC). Imported here, when asked: mutagen is not needed to sniff."""
    from mutagen.aac import AAC
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

    by_kind: dict[str, list[Any]] = {
        "MP3": [MP3], "FLAC": [FLAC], "WAV": [WAVE], "MP4": [MP4], "AIFF": [AIFF], "WMA": [ASF],
        "AAC": [AAC], "Ogg": [OggVorbis, OggOpus, OggSpeex, OggFLAC]}
    return by_kind.get(kind, [])
