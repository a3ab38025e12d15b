"""The scan tests' shared pieces: the low bar they choose with, and one way to build a Scanner
over one folder (the session's engine, or a model of its own)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Engine
from tagger.analysis.taxonomy import Selection
from tagger.cache import Cache
from tagger.library.pipeline import Scanner, ScanOptions

#: A low bar, so that synthetic test music always gets a genre (conftest's ``engine`` has it).
LOW_BAR = Selection(min_confidence=0.01)


def scanner(root: Path, cache: Cache, engine: Engine, model: str | None = None,
            **options: Any) -> Scanner:
    """A Scanner over ``root`` with these :class:`ScanOptions` fields; ``model``: another model
    (loaded by the scan when it needs it), else the session's ``engine``."""
    scan = replace(ScanOptions(roots=(str(root),)), **options)
    if model is None:
        return Scanner(scan, engine.config, cache, engine)
    return Scanner(scan, EngineConfig(model=model, selection=LOW_BAR), cache)
