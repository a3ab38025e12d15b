"""The daemon's configuration: one TOML file, then environment variables, then flags.

Every key is checked at start-up: a wrong key or value is an error that names it, not a crash an
hour later. Files: ``/etc/genre-tagger/config.toml`` for the system service,
``~/.config/genre-tagger/config.toml`` for a user. Environment: ``GENRE_TAGGER_<KEY>`` (roots
separated by ``:``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from tagger.config import DEFAULT_BUDGET, EngineConfig
from tagger.errors import TaggerError
from tagger.policy import POLICIES
from tagger.taxonomy import Selection

SYSTEM_CONFIG = Path("/etc/genre-tagger/config.toml")
OBSERVERS = ("auto", "inotify", "polling")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(TaggerError):
    """A configuration key or value is wrong; the message names it and says why."""


@dataclass(frozen=True)
class DaemonConfig:
    roots: tuple[str, ...] = ()
    policy: str = "missing"
    top_k: int = Selection.top_k
    min_confidence: float = Selection.min_confidence
    model: str = "musicnn"
    device: str = "auto"
    batch_size: int = 0  # 0: the device's default
    budget: int = DEFAULT_BUDGET  # 0: every window
    observer: str = "auto"  # auto: polling on network/FUSE file systems, inotify elsewhere
    settle_seconds: float = 2.0  # a file must keep its size and mtime this long to be "complete"
    poll_seconds: float = 5.0  # polling observer interval
    batch_files: int = 8  # files per worker batch: bounds memory and the SIGTERM wait
    database: str = ""  # SQLAlchemy URL; empty: the XDG state default
    log_level: str = "info"
    status_seconds: float = 60.0  # how often a summary line is logged
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(model=self.model, device=self.device,  # type: ignore[arg-type]
                            batch_size=self.batch_size or None,
                            budget=self.budget or None,
                            selection=Selection(top_k=self.top_k, min_confidence=self.min_confidence))


_TYPES: dict[str, type] = {f.name: f.type for f in fields(DaemonConfig) if f.name != "extra"}  # type: ignore[misc]


def default_path() -> Path:
    if os.geteuid() == 0 and SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    user = Path(base) / "genre-tagger" / "config.toml"
    return user if user.exists() else SYSTEM_CONFIG


def _coerce(key: str, value: Any, where: str) -> Any:
    kind = str(_TYPES[key])
    try:
        if key == "roots":
            items = value.split(":") if isinstance(value, str) else list(value)
            if not all(isinstance(r, str) and r for r in items):
                raise ValueError("a list of folder paths")
            return tuple(str(Path(r).expanduser().absolute()) for r in items)
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("a whole number")
            return int(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("a number")
            return float(value)
        if not isinstance(value, str):
            raise ValueError("a string")
        return value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: '{key}' must be {e if str(e) else kind}, not {value!r}") from None


def _validate(cfg: DaemonConfig) -> DaemonConfig:
    from tagger.model.catalog import MODELS

    checks = [
        (cfg.policy in POLICIES, "policy", f"one of {', '.join(POLICIES)}"),
        (cfg.model in MODELS, "model", f"one of {', '.join(MODELS)}"),
        (cfg.device in ("auto", "cpu", "gpu"), "device", "auto, cpu or gpu"),
        (cfg.observer in OBSERVERS, "observer", f"one of {', '.join(OBSERVERS)}"),
        (cfg.log_level in LOG_LEVELS, "log_level", f"one of {', '.join(LOG_LEVELS)}"),
        (cfg.top_k >= 1, "top_k", "at least 1"),
        (0.0 <= cfg.min_confidence <= 1.0, "min_confidence", "between 0 and 1"),
        (cfg.batch_size >= 0, "batch_size", "0 (automatic) or more"),
        (cfg.budget >= 0, "budget", "0 (every window) or more"),
        (cfg.settle_seconds >= 0, "settle_seconds", "0 or more"),
        (cfg.poll_seconds > 0, "poll_seconds", "more than 0"),
        (cfg.batch_files >= 1, "batch_files", "at least 1"),
        (cfg.status_seconds > 0, "status_seconds", "more than 0"),
        (bool(cfg.roots), "roots", "at least one music folder"),
    ]
    for ok, key, want in checks:
        if not ok:
            raise ConfigError(f"'{key}' must be {want}, not {getattr(cfg, key)!r}")
    for root in cfg.roots:
        if not Path(root).is_dir():
            raise ConfigError(f"'roots': {root} is not a folder")
    return cfg


def load(path: Path | None = None, env: dict[str, str] | None = None,
         overrides: dict[str, Any] | None = None) -> DaemonConfig:
    """File, then ``GENRE_TAGGER_*`` environment variables, then ``overrides`` (flags)."""
    values: dict[str, Any] = {}
    path = path or default_path()
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"{path}: {e}") from None
        for key, value in data.items():
            if key not in _TYPES:
                raise ConfigError(f"{path}: unknown key '{key}' (known: {', '.join(sorted(_TYPES))})")
            values[key] = _coerce(key, value, str(path))
    for key in _TYPES:
        raw = (env if env is not None else os.environ).get(f"GENRE_TAGGER_{key.upper()}")
        if raw is not None:
            values[key] = _coerce(key, raw, f"$GENRE_TAGGER_{key.upper()}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value, "command line")
    return _validate(DaemonConfig(**values))
