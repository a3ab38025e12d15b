"""Which model is in use: the ``model`` setting's, unless learning switched from it.

Learning (:mod:`tagger.training.learning`) keeps its decisions and its models' files in the
cache (:mod:`tagger.cache.learning`). Every front door that tags resolves the settings here
(:func:`resolve`, called by :mod:`tagger.services`), so scan, the daemon and the beets plugin
on any machine sharing the cache use the same model. A switched model's file is written out of
the database next to the cache (``models/``) the first time a process needs it.
"""

from __future__ import annotations

import datetime
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from tagger.analysis.model.catalog import MODELS
from tagger.analysis.model.trained import load
from tagger.cache import Cache
from tagger.cache.learning import Decisions, Learnt
from tagger.cache.store import default_url, sqlite_file
from tagger.errors import ModelFileError
from tagger.settings import Settings


@dataclass(frozen=True)
class InUse:
    settings: Settings  # with ``model`` the file of the model in use
    switch: Learnt | None  # the switch whose model it is; None: the setting's own


def models_dir(cache: Cache) -> Path:
    """Where learnt models' files go: beside the SQLite cache, else beside the default one
    (the state directory: PostgreSQL's database is elsewhere)."""
    base = cache.file or sqlite_file(default_url()) or "."
    return Path(base).parent / "models"


def model_path(cache: Cache, switch: Learnt) -> Path:
    """The switch's model file on this machine, written from the database when it is not here
    (or not the same bytes): the database is the one copy every machine shares."""
    assert switch.version is not None
    path = models_dir(cache) / f"{switch.version.split('@')[0]}.npz"
    try:
        if path.is_file() and load(path).version == switch.version:
            return path
    except ModelFileError:
        pass  # damaged or foreign: written again
    data = Decisions(cache).model_file(switch.id)
    if data is None:
        raise ModelFileError(f"the learnt model {switch.version} has no file in the cache")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a temporary file of its own (processes and threads may write it at once), renamed
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp's 0600 would keep other users out
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        raise ModelFileError(f"cannot write the learnt model {switch.version} to {path.parent}: "
                             f"{e.strerror or e}") from None
    if load(path).version != switch.version:
        raise ModelFileError(f"the learnt model {switch.version}: its file in the cache does not "
                             "match its version")
    return path


def resolve(settings: Settings, cache: Cache) -> InUse:
    """``settings`` with the model in use: learning's switch for this ``model`` setting if its
    newest decision names one, else the setting's own model."""
    switch = Decisions(cache).in_use(settings.model)
    if switch is None:
        return InUse(settings, None)
    return InUse(replace(settings, model=str(model_path(cache, switch))), switch)


def when(at: float) -> str:
    """A moment as people read it in ``status`` and the log (local time, to the minute)."""
    return datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M")


def model_name(setting: str, switch: Learnt | None = None) -> str:
    """What a person calls a model: a learnt one's version, else the setting's model (a file
    by its name)."""
    if switch is not None and switch.version is not None:
        return switch.version
    return setting if setting in MODELS else os.path.basename(setting)


def judged(row: Learnt) -> str:
    """A decision's two scores in words."""
    if row.compared is None or row.candidate_right is None or row.current_right is None:
        return ""
    current = row.current_version or ""
    if current.split("@")[0] == row.setting or not current:  # the setting's shipped model
        current = model_name(row.setting)
    return (f"right on {row.candidate_right:.2f} of {row.compared} held-out songs where "
            f"{current} was right on {row.current_right:.2f}, "
            f"answering {row.candidate_answered or 0:.2f} vs {row.current_answered or 0:.2f}")


def describe(cache: Cache, settings: Settings) -> dict[str, object]:
    """Which model is in use and why, for ``status`` and ``stats`` (and their ``--json``)."""
    decisions = Decisions(cache)
    setting = settings.model
    last = decisions.latest(setting)
    switch = decisions.in_use(setting, last)
    if switch is not None:
        previous = decisions.get(switch.previous) if switch.previous is not None else None
        why = (f"learnt from the genres people set ({switch.songs} songs) on "
               f"{when(switch.created_at)}: {judged(switch)}; 'genre-tagger learn --back' "
               f"returns to {model_name(setting, previous)}")
    else:
        why = "the 'model' setting"
        if last is not None and last.decision == "back":
            why += f"; you went back to it on {when(last.created_at)}"
    out: dict[str, object] = {"model": model_name(setting, switch), "why": why,
                              "learn": settings.learn}
    if last is not None and last.decision == "kept":
        out["last_candidate"] = f"{when(last.created_at)}: not switched: {last.why}"
    look = decisions.last_look(setting)
    if look is not None:
        out["last_look"] = f"{when(float(look['at']))}: {look['said']}"
    return out


__all__ = ["InUse", "describe", "judged", "model_name", "model_path", "models_dir", "resolve",
           "when"]
