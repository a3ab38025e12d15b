"""SIGKILL a writing process at random moments: every file is either as it was or updated."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tagfiles import make_tagged, stream_md5

from tagger.tags import read_genres

WRITER = r"""
import sys, itertools
from tagger.tags import write_genres
paths = sys.argv[1:]
sets = [["Rock", "Pop"], ["Jazz"], ["Electronic", "House", "Techno"]]
print("ready", flush=True)
for i in itertools.count():
    write_genres(paths[i % len(paths)], sets[i % len(sets)])
"""
ALLOWED = ([], ["Rock", "Pop"], ["Jazz"], ["Electronic", "House", "Techno"])
KILLS = 50


@pytest.fixture(scope="module")
def victims(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[Path, str]]:
    d = tmp_path_factory.mktemp("victims")
    files = [make_tagged(d, name, seconds=20.0) for name in ("flac", "mp3-v24", "m4a", "ogg")]
    return files, {f: stream_md5(f, "0:a:0") for f in files}


def test_sigkill_at_any_moment_never_damages_a_file(victims: tuple[list[Path], dict[Path, str]],
                                                    tmp_path: Path) -> None:
    files, audio = victims
    work = []
    for f in files:
        shutil.copy2(f, tmp_path / f.name)
        work.append(tmp_path / f.name)
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    changed = 0
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, *map(str, work)], env=env,
                                stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for f in work:
            genres = read_genres(f)  # parses: the tags are whole
            assert genres in ALLOWED, (f, genres)
            changed += genres != []
        for f, orig in zip(work, files):
            assert stream_md5(f, "0:a:0") == audio[orig], f  # the audio is untouched
    assert changed > 0  # the writer did get to write between kills
    # Killed writers may leave hidden temporary copies, never a damaged original.
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert all(p.name.endswith(".genre-tagger.tmp") for p in leftovers)
