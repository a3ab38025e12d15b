"""glibc's malloc arenas are capped however genre-tagger is started.

TensorFlow's threads each grow an arena; uncapped, a long-running daemon climbed past the unit's
MemoryMax. The cap is set when the package is first imported, before any thread of ours exists:
this counts the arenas (``malloc_info``) of a real process whose 32 threads all allocate.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

COUNT_ARENAS = """
import ctypes, sys, tempfile, threading
if sys.argv[1] == "import-first":
    import tagger  # what every front door does first: the CLI, the daemon, the beets plugin
ready = threading.Barrier(33)
done = threading.Event()

def work():
    kept = [bytearray(200_000) for _ in range(20)]  # malloc, from this thread's arena
    ready.wait()
    done.wait()

threads = [threading.Thread(target=work) for _ in range(32)]
for t in threads:
    t.start()
ready.wait()
libc = ctypes.CDLL("libc.so.6")
libc.fdopen.restype = ctypes.c_void_p
fd, name = tempfile.mkstemp()
fp = ctypes.c_void_p(libc.fdopen(fd, b"w"))
libc.malloc_info(0, fp)
libc.fflush(fp)
print(open(name).read().count("<heap nr="))
done.set()
"""


def arenas(mode: str, **env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", COUNT_ARENAS, mode], capture_output=True, text=True,
                         env={**clean, "PYTHONPATH": str(REPO), **env}, check=True)
    return int(out.stdout)


def test_importing_the_package_caps_the_arenas_without_any_environment() -> None:
    assert arenas("import-first") == 2
    assert arenas("no-import") > 2  # what the same process gets from glibc on its own


def test_the_environment_still_wins() -> None:
    assert arenas("import-first", MALLOC_ARENA_MAX="3") == 3
