"""Find a file's cached analysis without decoding: by unchanged stat, then by audio identity.

Shared by every front door (scan, the beets plugin, the daemon) so that a track one of them
analysed is never analysed again by another.
"""

from __future__ import annotations

import os
import time

from tagger.analysis.engine import Failure, Prediction
from tagger.cache import Cache, TrackRow
from tagger.cache.store import StoredFeatures
from tagger.formats.identity import audio_identity, trusted

ANALYSED = ("done", "abstained")


def cached_row(cache: Cache, path: str, st: os.stat_result,
               version: str) -> tuple[TrackRow | None, str | None]:
    """``(row with usable scores, audio id)``; the row is None when the file must be analysed.

    The row is the file's own (unchanged stat, or same audio after a tag edit) or, for audio
    cached under another path, preferably one whose file has vanished: then the file was moved.
    The audio id is only computed when the stat does not settle it (it reads the whole file).
    """
    row = cache.get(path)
    if (row and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
            and row.model_version == version and row.status in ANALYSED):
        return row, row.audio_id
    try:
        audio_id = audio_identity(path)
    except OSError:
        return None, None
    if not trusted(audio_id):
        return None, audio_id  # an identity that says nothing about the audio is never reused
    if row and row.audio_id == audio_id and row.model_version == version and (
            row.status in ANALYSED or (row.status == "deleted" and row.genre_scores)):
        return row, audio_id  # a tag edit, or a file that went away and came back
    others = [r for r in cache.by_audio_id(audio_id, version) if r.path != path]
    others.sort(key=lambda r: os.path.exists(r.path))  # vanished paths (moves) first
    return (others[0] if others else None), audio_id


def failure_key() -> str:
    """What an analysis failure depends on besides the file: genre-tagger's version and the
    decoder's. A failure recorded under another key is retried (a newer ffmpeg may read it)."""
    from tagger import __version__
    from tagger.analysis.decode import decoder_version

    return f"analysis|{__version__}|{decoder_version()}"


def record_prediction(cache: Cache, result: Prediction | Failure, st: os.stat_result,
                      audio_id: str | None, version: str, analysed: bool = True) -> None:
    """Store an engine result for ``result.path`` (scores, or the failure and its reason), and
    the audio's features (by identity, so its copies and moves share them). ``analysed``:
    the file was decoded and the network ran (False: re-scored from stored features)."""
    if isinstance(result, Failure):
        cache.upsert(result.path, size=st.st_size, mtime_ns=st.st_mtime_ns, audio_id=audio_id,
                     status="failed", error_code=result.code, error_reason=result.reason,
                     model_version=version, decision_key=failure_key())
        return
    cache.upsert(result.path, size=st.st_size, mtime_ns=st.st_mtime_ns, audio_id=audio_id,
                 model_version=result.model_version, raw_scores=result.raw,
                 genre_scores=result.genre_scores, status="done", error_code=None,
                 error_reason=None, analysed_at=time.time())
    if analysed:
        cache.count_analysis(result.path)
    if result.features and result.base_version and trusted(audio_id):
        cache.put_features(str(audio_id), result.base_version,
                           StoredFeatures(result.windows, result.features, result.raw,
                                          result.timeline))


def copy_scores(cache: Cache, path: str, src: TrackRow, st: os.stat_result, audio_id: str | None) -> None:
    """Give ``path`` the cached analysis ``src`` (same audio under another path)."""
    cache.upsert(path, size=st.st_size, mtime_ns=st.st_mtime_ns, audio_id=audio_id,
                 model_version=src.model_version, raw_scores=src.raw_scores,
                 genre_scores=src.genre_scores, status=src.status, analysed_at=src.analysed_at,
                 error_code=None, error_reason=None)
