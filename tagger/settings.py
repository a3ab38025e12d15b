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

import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
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
#: Where ``genre-tagger serve`` listens when no ``listen`` is set: this machine only.
DEFAULT_LISTEN = "127.0.0.1:8337"


def parse_listen(value: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port), or None if it is not one."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() or c in "/[]" for c in host):
        return None
    return host, int(port)


def loopback(listen: str) -> bool:
    """Whether ``listen`` reaches only this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    parsed = parse_listen(listen)
    if parsed is None:
        return False
    if parsed[0] == "localhost":
        return True
    try:
        return ipaddress.ip_address(parsed[0]).is_loopback
    except ValueError:  # a name: it may resolve anywhere
        return False


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
    # --- learning (tagger.training.learning)
    learn: bool = False  # the daemon learns from the genres people set, and switches when better
    learn_seconds: float = 86400.0  # how often the daemon looks at the labels again
    #: How much more often (share of held-out songs) a candidate must be right to replace the
    #: model in use: with the few dozen songs a person labels, one song moves it by 0.02-0.05.
    learn_margin: float = 0.05
    # --- the page (tagger.web)
    listen: str = ""  # HOST:PORT; empty: the daemon serves no page, ``serve`` uses DEFAULT_LISTEN
    web_secret: str = ""  # the page's password; required to listen beyond this machine
    web_read_only: bool = False  # the page shows and plays, never writes

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


#: How a key's value is read: its type, or a special form (``roots``: folders; ``budget``:
#: auto / all / N; ``model``: a name or a model file; ``genres``: the [genres] table).
Kind = Literal["str", "int", "float", "bool", "roots", "budget", "model", "genres"]


@dataclass(frozen=True)
class Key:
    """One setting, described once. The config file's key, the ``GENRE_TAGGER_<KEY>`` variable,
    the commands' option (:func:`tagger.cli.setting_options`), the beets plugin's key, the
    checks and the README's settings block (:func:`toml_block`, kept equal by a test) are all
    made from it, so a new setting is one row here and one field of :class:`Settings`."""

    name: str
    kind: Kind
    help: str  # what it does, in one phrase: the option's help and the README's comment
    choices: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None  # beyond its kind
    must: str = ""  # what ``check`` asks, in words
    flag: str | None = None  # the commands' option (``--keep-mtime/--no-keep-mtime``); None: none
    short: str | None = None  # its one-letter form
    beets: str | None = None  # the beets plugin's name for it (None: not a plugin key)
    default_words: str | None = None  # the default said in words where the value says little
    example: str | None = None  # the README's value where the default is empty

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.name.upper()}"

    @property
    def default(self) -> Any:
        return _DEFAULTS[self.name]


_DEFAULTS = {f.name: getattr(Settings(), f.name) for f in fields(Settings)}
SPEC: tuple[Key, ...] = (
    Key("roots", "roots", "folders to watch (environment: separated by ':')",
        example='["/srv/music"]'),
    Key("policy", "str", "missing: only files without genres; merge: keep theirs, add ours; "
        "overwrite: replace", POLICIES, flag="--policy"),
    Key("top_k", "int", "at most this many genres per file", check=lambda v: v >= 1,
        must="at least 1", flag="--top-k", beets="count"),
    Key("min_confidence", "float", "abstain when no genre scores at least this",
        check=lambda v: 0.0 <= v <= 1.0, must="between 0 and 1", flag="--min-confidence",
        beets="min_confidence"),
    Key("model", "model", f"a shipped model ({', '.join(sorted(MODELS))}) or a model file made "
        "by 'genre-tagger train'", flag="--model", beets="model"),
    Key("device", "str", "auto uses a GPU when the backend sees one", DEVICES, flag="--device",
        beets="device"),
    Key("batch_size", "int", "windows per model call; 0: 16 on CPU, 256 on GPU",
        check=lambda v: v >= 0, must="0 (automatic) or more", flag="--batch-size",
        beets="batch_size"),
    Key("budget", "budget", "windows per track: 'auto' (a few, more while the top genre is still "
        "open), a number spread evenly, or 'all' (or 0) for every window",
        check=lambda v: v == "auto" or v >= 0,
        must="'auto', a whole number of windows, or 'all' (or 0) for every window",
        flag="--budget", beets="budget"),
    Key("precision", "str", "CPU arithmetic: auto runs int8 + bfloat16 where the CPU computes "
        "bfloat16 natively (1.9x float32's speed, same top genre), else float32", PRECISIONS,
        flag="--precision", beets="precision"),
    Key("jobs", "int", "files decoded in parallel; 0: up to 4 CPUs, every CPU when a GPU runs "
        "the model", check=lambda v: v >= 0, must="0 (automatic) or more", flag="--jobs",
        short="-j", beets="jobs"),
    Key("window_hop", "float", "seconds between window starts (3: no overlap)",
        check=lambda v: v >= 0.1, must="at least 0.1 seconds", flag="--window-hop"),
    Key("timeout", "float", "seconds a file may take to decode", check=lambda v: v >= 1,
        must="at least 1 second", flag="--timeout"),
    Key("id3v23", "bool", "write ID3v2.3 (genres joined with id3_separator) instead of keeping "
        "each file's version", flag="--id3v23"),
    Key("id3v24", "bool", "write ID3v2.4 into v2.3 files too: TagLib and MPD then see each genre, "
        "not one joined genre (README: \"What your player shows\")", flag="--id3v24"),
    Key("id3_separator", "str", "how ID3v2.3 joins several genres", flag="--id3-separator"),
    Key("keep_mtime", "bool", "keep the files' mtime when tagging (players that re-read only "
        "files whose mtime moved then never see the genres)",
        flag="--keep-mtime/--no-keep-mtime"),
    Key("hard_links", "str", "a file with several names: leave it alone, split it (this name gets "
        "the new file), or write in place (every name sees it; not crash-safe)", HARD_LINKS,
        flag="--hard-links"),
    Key("observer", "str", "auto: polling on network and FUSE file systems, inotify elsewhere",
        OBSERVERS, flag="--observer"),
    Key("settle_seconds", "float", "seconds a file's size and mtime must stay unchanged before "
        "it is analysed", check=lambda v: v >= 0, must="0 or more", flag="--settle"),
    Key("poll_seconds", "float", "the polling observer's interval", check=lambda v: v > 0,
        must="more than 0"),
    Key("batch_files", "int", "files per worker batch (bounds memory and the SIGTERM wait)",
        check=lambda v: v >= 1, must="at least 1"),
    Key("database", "str", "the cache: any SQLAlchemy URL", flag="--db", beets="cache_db",
        default_words="SQLite in ~/.local/state/genre-tagger/"),
    Key("log_level", "str", "the daemon's log level", LOG_LEVELS, flag="--log-level"),
    Key("status_seconds", "float", "how often the daemon logs a summary line",
        check=lambda v: v > 0, must="more than 0"),
    Key("album", "bool", "one genre set per album (album and album artist tags, else the "
        "folder), from the mean of its tracks' scores; the daemon decides once its files have "
        "all settled", flag="--album/--no-album"),
    Key("learn", "bool", "the daemon learns a model from the genres people set and uses it "
        "when it is better on songs it never saw (see \"The library teaches it\")",
        flag="--learn/--no-learn"),
    Key("learn_seconds", "float", "how often the daemon looks at the labels again (it learns "
        "only when they changed)", check=lambda v: v > 0, must="more than 0"),
    Key("learn_margin", "float", "how much more often a learnt model must be right than the one "
        "in use (share of held-out songs)", check=lambda v: 0.0 <= v < 1.0,
        must="at least 0 and below 1", flag="--margin"),
    Key("listen", "str", "the page's address, HOST:PORT: 'genre-tagger serve' and, when set, "
        "the daemon serve it; anything but this machine needs web_secret",
        check=lambda v: v == "" or parse_listen(v) is not None,
        must=f"HOST:PORT, such as {DEFAULT_LISTEN}", flag="--listen",
        default_words=f"the daemon serves no page; 'serve' listens on {DEFAULT_LISTEN}"),
    Key("web_secret", "str", "the password the page asks for (keep the file private)",
        check=lambda v: v == "" or len(v) >= 12, must="at least 12 characters",
        default_words="no password: only this machine may connect"),
    Key("web_read_only", "bool", "the page shows and plays, never writes a file",
        flag="--read-only/--read-write"),
    Key("genres", "genres", "your vocabulary: see \"Your words\" (a SIGHUP re-decides from the "
        "cache)"),
)
KEYS = {k.name: k for k in SPEC}
if set(KEYS) != set(_DEFAULTS):  # pragma: no cover (a setting added to one and not the other)
    raise AssertionError(f"settings without a spec row: {set(_DEFAULTS) ^ set(KEYS)}")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def toml_block() -> str:
    """Every setting with its default and what it does, as the README shows them."""
    lines = []
    for k in SPEC:
        if k.kind == "genres":
            lines.append(f"\n{'[genres]':<24} # {k.help}")
            continue
        value = k.example or _toml(k.default)
        words = f" (empty: {k.default_words})" if k.default == "" and k.default_words else ""
        choices = f"{' | '.join(k.choices)}: " if k.choices and ":" not in k.help else ""
        lines.append(f"{k.name} = {value}".ljust(24) + f" # {choices}{k.help}{words}")
    return "\n".join(lines) + "\n"


def beets_keys() -> dict[str, Key]:
    """The beets plugin's keys that are genre-tagger settings: its name -> the setting."""
    return {k.beets: k for k in SPEC if k.beets}


def _coerce(key: str, value: Any) -> Any:
    """``value`` as the key's type; ValueError says what it must be."""
    kind = KEYS[key].kind
    if kind == "genres":
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
    if kind == "model" and isinstance(value, str) and value not in MODELS:
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
        if key not in KEYS:
            raise ConfigError(f"{origin}: unknown key '{key}' (known: {', '.join(sorted(KEYS))})")
        spec = KEYS[key]
        try:
            value = _coerce(key, raw)
        except ValueError as e:
            if key == "genres":  # the map's own messages name the key and say why
                raise ConfigError(f"{origin}: [genres]: {e}") from None
            raise ConfigError(f"{origin}: '{key}' must be {e}, not {raw!r}") from None
        if spec.choices and value not in spec.choices:
            raise ConfigError(f"{origin}: '{key}' must be one of {', '.join(spec.choices)}, "
                              f"not {raw!r}")
        if spec.check and not spec.check(value):
            raise ConfigError(f"{origin}: '{key}' must be {spec.must}, not {raw!r}")
        if spec.kind == "model" and value not in MODELS:
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
    if settings.learn and settings.policy == "overwrite":
        raise ConfigError(f"{where.get('learn', 'settings')}: 'learn' needs policy 'missing' or "
                          "'merge': 'overwrite' replaces the genres people set, which learning "
                          "learns from")
    if settings.listen and not settings.web_secret and not loopback(settings.listen):
        raise ConfigError(f"{where.get('listen', 'settings')}: 'listen' = {settings.listen!r} lets "
                          "other machines change your files' genres: set 'web_secret' (a "
                          "password the page asks for), or listen on this machine only "
                          f"({DEFAULT_LISTEN})")
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
    for k in SPEC:
        raw = environ.get(k.env)
        if raw is not None:
            values[k.name], where[k.name] = raw, f"${k.env}"
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
    "DEFAULT_LISTEN",
    "DEVICES",
    "KEYS",
    "LOG_LEVELS",
    "OBSERVERS",
    "PRECISIONS",
    "SPEC",
    "ConfigError",
    "Key",
    "Settings",
    "beets_keys",
    "build_settings",
    "check_genre_map",
    "default_path",
    "load_settings",
    "loopback",
    "parse_listen",
    "toml_block",
]
