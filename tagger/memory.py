"""Cap glibc's malloc arenas for the whole process, as early as possible.

TensorFlow's thread pools each grow a glibc malloc arena (by default up to 8 per core); in a
long-running process the resident size climbed from 1.5 to over 4 GB that way, while 2 arenas
keep it near 2 GB at the same speed (bench/bench_daemon.py). glibc fixes its arena limit the
first time a thread needs a new arena once several exist, so ``mallopt`` only holds if it runs
before other threads allocate: hence at the first import of the package, not when the model
loads (by then the daemon's observers and decoder threads exist). ``MALLOC_ARENA_MAX`` in the
environment, if set, wins.
"""

from __future__ import annotations

import os
import sys

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's option number for mallopt(3)


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """True when the cap was set here (False: the environment decides, or not glibc)."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False  # not glibc (musl, ...): nothing to tune
