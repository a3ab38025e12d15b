"""Fallback decoder child: ``python -m tagger.sndfile_child FILE RATE`` writes f32le to stdout.

Run as its own process so that a libsndfile crash on a hostile file only ends this child.
"""

from __future__ import annotations

import sys

import numpy as np


def main() -> None:
    import soundfile as sf
    import soxr

    path, rate = sys.argv[1], int(sys.argv[2])
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    out = soxr.resample(mono, sr, rate, quality="HQ") if sr != rate else mono
    sys.stdout.buffer.write(np.ascontiguousarray(out, dtype=np.float32).tobytes())


if __name__ == "__main__":
    main()
