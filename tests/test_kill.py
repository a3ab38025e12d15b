"""SIGKILL a writing process at random moments: every file is either as it was or updated.

Every tag format, and a symlink inside the library (written through, never replaced by a file).
50 kills run by default; ``-m slow`` runs 100.
"""

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
from tagfiles import TAG_FORMATS, make_tagged, stream_md5

from tagger.tags import read_genres
from tagger.tags.safe_write import is_temp_name

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


@pytest.fixture(scope="module")
def victims(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[Path, str]]:
    d = tmp_path_factory.mktemp("victims")
    files = [make_tagged(d, name, seconds=20.0) for name in TAG_FORMATS]
    return files, {f: stream_md5(f, "0:a:0") for f in files}


@pytest.mark.parametrize("kills", [50, pytest.param(100, marks=pytest.mark.slow)])
def test_sigkill_at_any_moment_never_damages_a_file(victims: tuple[list[Path], dict[Path, str]],
                                                    tmp_path: Path, kills: int) -> None:
    files, audio = victims
    work = []
    for f in files:
        shutil.copy2(f, tmp_path / f"{f.stem}-{f.suffix[1:]}{f.suffix}")
        work.append(tmp_path / f"{f.stem}-{f.suffix[1:]}{f.suffix}")
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "linked.flac"
    shutil.copy2(work[[f.suffix for f in files].index(".flac")], target)
    link = tmp_path / "link.flac"
    link.symlink_to(target)
    link_audio = stream_md5(target, "0:a:0")
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    changed = 0
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, *map(str, [*work, link])], env=env,
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
        assert link.is_symlink() and read_genres(link) in ALLOWED  # written through, still a link
        assert stream_md5(target, "0:a:0") == link_audio
    assert changed > 0  # the writer did get to write between kills
    # Killed writers may leave hidden temporary copies, never a damaged original.
    leftovers = [p for d in (tmp_path, target.parent) for p in d.iterdir() if p.name.startswith(".")]
    assert all(is_temp_name(p.name) for p in leftovers), leftovers
