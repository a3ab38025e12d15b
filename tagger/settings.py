"""The one settings object, built in one place: TOML file, then ``GENRE_TAGGER_*`` environment
variables, then flags (or, for the beets plugin, beets' own config mapped onto the same keys).

Every front door (the CLI commands, the daemon, the beets plugin) builds a :class:`Settings`
with :func:`load_settings` or :func:`build_settings` and hands it down; the engine, the tag
writer and the library pipeline get the typed pieces they need from it. Every key is checked
when the settings are built: a wrong key or value is an error that names it, not a crash an hour
later. Files: ``/etc/genre-tagger/config.toml`` for the system service,
``~/.config/genre-tagger/config.toml`` for a user (``--config FILE`` for any command).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tagger.analysis.budget import AdaptiveBudget
from tagger.analysis.config import EngineConfig
from tagger.analysis.model.catalog import DEFAULT_MODEL, MODELS
from tagger.analysis.model.runner import Device, Precision
from tagger.analysis.taxonomy import Selection, parent_tree
from tagger.analysis.vocabulary import GenreMap
from tagger.analysis.vocabulary import parse as parse_genre_map
from tagger.errors import ConfigError
from tagger.library.policy import POLICIES, Policy
from tagger.tags.base import HARD_LINKS, HardLinks, TagOptions

SYSTEM_CONFIG = Path("/etc/genre-tagger/config.toml")
Observer = Literal["auto", "inotify", "polling"]
LogLevel = Literal["debug", "info", "warning", "error"]
#: The choice lists, defined once (the CLI's choices and the validation both read them).
DEVICES: tuple[Device, ...] = get_args(Device)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
#: Windows per track: ``auto`` (the adaptive rule), a whole number, or 0 for every window.
Budget = int | Literal["auto"]
OBSERVERS: tuple[Observer, ...] = get_args(Observer)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
ENV_PREFIX = "GENRE_TAGGER_"


@dataclass(frozen=True)
class Settings:
    # --- the library
    roots: tuple[str, ...] = ()
    policy: Policy = "missing"
    # --- which genres
    top_k: int = Selection.top_k
    min_confidence: float = Selection.min_confidence
    genres: GenreMap = field(default_factory=GenreMap)  # [genres]: tagger.analysis.vocabulary
    album: bool = False  # one genre set per album (scan --album; the daemon waits for albums)
    # --- the engine
    model: str = DEFAULT_MODEL
    device: Device = "auto"
    batch_size: int = 0  # windows per model call; 0: the device's measured default
    jobs: int = 0  # files decoded in parallel; 0: up to 4 CPUs, every CPU with a GPU
    precision: Precision = "auto"  # auto: int8 + bfloat16 where the CPU has bfloat16, else float32
    #: Windows per track: auto (as few as settle the top genre), N spread evenly, 0: every
    #: window ("all" on the command line).
    budget: Budget = "auto"
    window_hop: float = 3.0  # seconds between window starts (3: no overlap)
    timeout: float = 120.0  # seconds a file may take to decode
    # --- the tags
    id3v23: bool = False  # write ID3v2.3 (genres joined) instead of keeping each file's version
    # write ID3v2.4 into v2.3 files too: TagLib (Navidrome, Jellyfin) and MPD then list the
    # genres one by one instead of one joined genre (see the README's players table)
    id3v24: bool = False
    id3_separator: str = "; "
    #: Keep the files' mtime when tagging (players then never re-read them; README "Safety").
    keep_mtime: bool = False
    hard_links: HardLinks = "leave"  # a file with several names: leave | split | in-place
    # --- the cache
    database: str = ""  # SQLAlchemy URL; empty: the XDG state default
    # --- the daemon
    observer: Observer = "auto"  # auto: polling on network/FUSE file systems, inotify elsewhere
    settle_seconds: float = 2.0  # a file must keep its size and mtime this long to be "complete"
    poll_seconds: float = 5.0  # polling observer interval
    batch_files: int = 8  # files per worker batch: bounds memory and the SIGTERM wait
    log_level: LogLevel = "info"
    status_seconds: float = 60.0  # how often a summary line is logged

    def selection(self) -> Selection:
        return Selection(top_k=self.top_k, min_confidence=self.min_confidence, genres=self.genres)

    def engine_config(self) -> EngineConfig:
        from tagger.analysis.features import HOP, SAMPLE_RATE

        return EngineConfig(
            model=self.model, device=self.device, precision=self.precision,
            batch_size=self.batch_size or None, jobs=self.jobs or None,
            budget=AdaptiveBudget() if self.budget == "auto" else self.budget or None,
            window_hop=max(1, round(self.window_hop * SAMPLE_RATE / HOP)),
            decode_timeout=self.timeout, selection=self.selection())

    def tag_options(self) -> TagOptions:
        return TagOptions(id3_version=3 if self.id3v23 else 4 if self.id3v24 else None,
                          id3v23_separator=self.id3_separator, keep_mtime=self.keep_mtime,
                          hard_links=self.hard_links)

    @property
    def cache_url(self) -> str | None:
        return self.database or None


_FIELDS = {f.name: f for f in fields(Settings)}
_CHOICES: dict[str, tuple[str, ...]] = {"policy": POLICIES, "device": DEVICES,
                                        "precision": PRECISIONS, "hard_links": HARD_LINKS,
                                        "observer": OBSERVERS, "log_level": LOG_LEVELS}
_KIND = {"roots": "roots", "top_k": "int", "batch_size": "int", "jobs": "int", "budget": "budget",
         "batch_files": "int", "min_confidence": "float", "window_hop": "float",
         "timeout": "float", "settle_seconds": "float", "poll_seconds": "float",
         "status_seconds": "float", "id3v23": "bool", "id3v24": "bool", "keep_mtime": "bool",
         "album": "bool"}
#: (check, what it must be) per key, beyond its type.
_RANGES: dict[str, tuple[Any, str]] = {
    "top_k": (lambda v: v >= 1, "at least 1"),
    "min_confidence": (lambda v: 0.0 <= v <= 1.0, "between 0 and 1"),
    "batch_size": (lambda v: v >= 0, "0 (automatic) or more"),
    "jobs": (lambda v: v >= 0, "0 (automatic) or more"),
    "budget": (lambda v: v == "auto" or v >= 0,
               "'auto', a whole number of windows, or 'all' (or 0) for every window"),
    "window_hop": (lambda v: v >= 0.1, "at least 0.1 seconds"),
    "timeout": (lambda v: v >= 1, "at least 1 second"),
    "settle_seconds": (lambda v: v >= 0, "0 or more"),
    "poll_seconds": (lambda v: v > 0, "more than 0"),
    "batch_files": (lambda v: v >= 1, "at least 1"),
    "status_seconds": (lambda v: v > 0, "more than 0"),
}


def _coerce(key: str, value: Any) -> Any:
    """``value`` as the key's type; ValueError says what it must be."""
    kind = _KIND.get(key, "str")
    if key == "genres":
        return parse_genre_map(value, parent_tree())
    if kind == "roots":
        items = value.split(":") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(r, str) and r for r in items):
            raise ValueError("a list of folder paths")
        return tuple(str(Path(r).expanduser().absolute()) for r in items)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ValueError("true or false")
    if key == "model" and isinstance(value, str) and value not in MODELS:
        # A trained model file (genre-tagger train): absolute, so the daemon finds it too.
        if not value.strip():
            raise ValueError(f"one of {', '.join(MODELS)}, or a model file made by "
                             "'genre-tagger train'")
        return str(Path(value).expanduser().absolute())
    if kind == "budget" and isinstance(value, str) and value.strip().lower() in ("all", "auto"):
        return 0 if value.strip().lower() == "all" else "auto"
    if kind in ("int", "budget"):
        want = "a whole number" + (" of windows, 'auto', or 'all' for every window"
                                   if kind == "budget" else "")
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(want)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(want) from None
    if kind == "float":
        if isinstance(value, bool):
            raise ValueError("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("a number") from None
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def build_settings(values: Mapping[str, Any], where: Mapping[str, str] | None = None,
                   require_roots: bool = False, check_genres: bool = True) -> Settings:
    """Settings from raw ``values`` (key -> value as written anywhere), checked key by key.

    ``where`` names the source of each key for the error message (a file, ``$GENRE_TAGGER_X``,
    the command line, beets' config). The genre map is checked against the model's genres
    (``check_genres=False``: training, which checks it against the labels, :func:`check_genre_map`).
    """
    where = where or {}
    typed: dict[str, Any] = {}
    values = dict(values)
    if "touch" in values:  # before 0.2 the mtime was kept unless touch = true
        touch = values.pop("touch")
        try:
            values.setdefault("keep_mtime", not _coerce("keep_mtime", touch))
        except ValueError:
            raise ConfigError(f"{where.get('touch', 'settings')}: 'touch' must be true or false, "
                              f"not {touch!r}") from None
        where = {**where, "keep_mtime": where.get("touch", "settings")}
    for key, raw in values.items():
        origin = where.get(key, "settings")
        if key not in _FIELDS:
            raise ConfigError(f"{origin}: unknown key '{key}' (known: {', '.join(sorted(_FIELDS))})")
        try:
            value = _coerce(key, raw)
        except ValueError as e:
            if key == "genres":  # the map's own messages name the key and say why
                raise ConfigError(f"{origin}: [genres]: {e}") from None
            raise ConfigError(f"{origin}: '{key}' must be {e}, not {raw!r}") from None
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"{origin}: '{key}' must be one of {', '.join(_CHOICES[key])}, "
                              f"not {raw!r}")
        check = _RANGES.get(key)
        if check and not check[0](value):
            raise ConfigError(f"{origin}: '{key}' must be {check[1]}, not {raw!r}")
        if key == "model" and value not in MODELS:
            from tagger.analysis.model.trained import load
            from tagger.errors import ModelFileError

            try:
                load(value)
            except ModelFileError as e:
                raise ConfigError(f"{origin}: 'model' must be one of {', '.join(MODELS)} or a "
                                  f"model file made by 'genre-tagger train': {e}") from None
        typed[key] = value
    settings = Settings(**typed)
    if settings.id3v23 and settings.id3v24:
        raise ConfigError(f"{where.get('id3v24', 'settings')}: 'id3v23' and 'id3v24' ask for "
                          "two ID3 versions: set one")
    if check_genres:  # against the model: a typo is said now, not never matched
        check_genre_map(settings, where=where.get("genres", "settings"))
    if require_roots:
        if not settings.roots:
            raise ConfigError("'roots' must be at least one music folder: name them "
                              "(genre-tagger watch /srv/music) or set roots = [\"/srv/music\"] "
                              f"in {_own_config_path()} (or the file --config names)")
        for root in settings.roots:
            if not Path(root).is_dir():
                raise ConfigError(f"'roots': {root} is not a folder")
    return settings


def _own_config_path() -> Path:
    """Where this user would put a config: root's is the system's, anyone else's their own."""
    if os.geteuid() == 0:
        return SYSTEM_CONFIG
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "genre-tagger" / "config.toml"


def default_path() -> Path:
    if os.geteuid() == 0 and SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    user = Path(base) / "genre-tagger" / "config.toml"
    return user if user.exists() else SYSTEM_CONFIG


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None, require_roots: bool = False,
                  check_genres: bool = True) -> Settings:
    """The file (``path``, else the default one if it exists), then ``GENRE_TAGGER_*``
    variables of ``env`` (the process environment by default), then ``overrides`` (flags; None
    values are ignored, so an option not given never hides the file's value)."""
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    path = path or default_path()
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from None
        for key, value in data.items():
            values[key], where[key] = value, str(path)
    environ = os.environ if env is None else env
    for key in _FIELDS:
        raw = environ.get(f"{ENV_PREFIX}{key.upper()}")
        if raw is not None:
            values[key], where[key] = raw, f"${ENV_PREFIX}{key.upper()}"
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key], where[key] = value, "command line"
    return build_settings(values, where, require_roots, check_genres)


def check_genre_map(settings: Settings, labels: Iterable[str] | None = None,
                    where: str = "the configuration") -> None:
    """ConfigError if the genre map names a genre the model (or, when training, the
    ``labels``) does not know, or renames two genres to one."""
    if settings.genres.empty:
        return
    from tagger.analysis.model.resolved import open_model

    model_genres, known = open_model(settings.model).vocabulary()
    if labels is not None:  # training: the labels are the genres; the model's are known words
        model_genres, known = tuple(labels), (*model_genres, *known)
    try:
        settings.genres.check(model_genres, known)
    except ValueError as e:
        raise ConfigError(f"{where}: [genres]: {e}") from None


__all__ = [
    "DEVICES",
    "LOG_LEVELS",
    "OBSERVERS",
    "PRECISIONS",
    "ConfigError",
    "Settings",
    "build_settings",
    "check_genre_map",
    "default_path",
    "load_settings",
]
