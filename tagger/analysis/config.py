"""One typed configuration object, passed down from the front doors to the engine."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tagger.analysis.budget import AdaptiveBudget
from tagger.analysis.model.catalog import DEFAULT_MODEL
from tagger.analysis.model.runner import Device, Precision
from tagger.analysis.taxonomy import Selection

#: ``--budget N``'s old default, and what a trained model gets (its head decides, not the
#: base model's genre scores that the adaptive rule reads).
FIXED_BUDGET = 24


def auto_jobs(on_gpu: bool) -> int:
    """Files decoded at once when not told: up to 4 CPUs when the model runs on the CPU too
    (it needs the rest), every CPU when a GPU runs it (then decoding is what bounds a scan:
    ``bench/gpu_check.py``)."""
    cpus = os.cpu_count() or 1
    return cpus if on_gpu else min(4, cpus)


@dataclass(frozen=True)
class EngineConfig:
    model: str = DEFAULT_MODEL
    device: Device = "auto"
    #: Arithmetic on the CPU: ``auto`` is int8 + bfloat16 where the CPU has bfloat16 natively.
    precision: Precision = "auto"
    #: Windows per model call; None picks a measured default for the device.
    batch_size: int | None = None
    #: Files decoded in parallel (decoders are child processes; threads just wait on them).
    #: None: :func:`auto_jobs`.
    jobs: int | None = None
    #: Frames between window starts; 187 (3 s) is musicnn's default: no overlap.
    window_hop: int = 187
    #: Which windows of a track are analysed: the adaptive rule (as few as settle the top
    #: genre), a fixed number spread evenly, or None: every window.
    budget: AdaptiveBudget | int | None = field(default_factory=AdaptiveBudget)
    decode_timeout: float = 120.0
    #: Full-mode decodes stop after this much audio, so a 10-hour file cannot exhaust memory.
    max_seconds: float = 3600.0
    selection: Selection = field(default_factory=Selection)
