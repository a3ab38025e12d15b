"""Fault injection for the crash tests: ``GENRE_TAGGER_FAULT=NAME`` makes the process SIGKILL
itself when it reaches the checkpoint ``NAME``.

Only the tests set the variable. The checkpoints sit between the steps of a tag write whose
order carries the crash-safety argument (temp copy written, renamed over the original, recorded
in the cache), so a test can stop the process exactly there instead of hoping a random kill
lands in a window a few microseconds wide.
"""

from __future__ import annotations

import os
import signal

ENV = "GENRE_TAGGER_FAULT"
#: The checkpoints, in the order a write reaches them.
CHECKPOINTS = ("after-intent", "after-temp-write", "after-rename", "after-commit")


def checkpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
