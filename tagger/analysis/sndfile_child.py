"""Fallback decoder child: ``python -m tagger.analysis.sndfile_child FILE RATE [MAX_SAMPLES]`` writes f32le.

Run as its own process so that a libsndfile crash on a hostile file only ends this child. It
streams (blocks in, resampled blocks out) and stops after ``MAX_SAMPLES``, so a long file never
sits in memory whole. A failure is one plain line on stderr, never a Python traceback: the
parent quotes it to a person.
"""

from __future__ import annotations

import os
import sys

import numpy as np

BLOCK = 1 << 16
#: ffmpeg's stereo-to-mono coefficient (libswresample: each side at 1/sqrt(2)); the main decoder
#: is ffmpeg, so a file it refuses must come out at the same level.
STEREO_TO_MONO = 0.5 ** 0.5


def downmix(frames: np.ndarray) -> np.ndarray:
    """(frames, channels) -> mono, as ffmpeg mixes mono and stereo; the mean beyond that."""
    if frames.shape[1] == 1:
        return np.ascontiguousarray(frames[:, 0])
    if frames.shape[1] == 2:
        return np.asarray((frames[:, 0] + frames[:, 1]) * np.float32(STEREO_TO_MONO))
    return np.asarray(frames.mean(axis=1, dtype=np.float32))


def main() -> int:
    import soundfile as sf
    import soxr

    path, rate = sys.argv[1], int(sys.argv[2])
    left = int(sys.argv[3]) if len(sys.argv) > 3 else None
    out = sys.stdout.buffer
    try:
        # Bytes, not str: soundfile encodes a str name strictly, which fails on non-UTF-8 names.
        with sf.SoundFile(os.fsencode(path)) as f:
            stream = soxr.ResampleStream(f.samplerate, rate, 1, dtype="float32", quality="HQ")
            for block in f.blocks(BLOCK, dtype="float32", always_2d=True):
                mono = downmix(block)
                res = stream.resample_chunk(mono) if f.samplerate != rate else mono
                if left is not None:
                    res, left = res[:left], left - len(res)
                out.write(np.ascontiguousarray(res, dtype=np.float32).tobytes())
                if left is not None and left <= 0:
                    return 0
            if f.samplerate != rate:
                res = stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                out.write(np.ascontiguousarray(res[:left], dtype=np.float32).tobytes())
    except sf.LibsndfileError as e:
        print(" ".join(str(e.error_string).split()), file=sys.stderr)
        return 1
    except Exception as e:  # whatever it is, a person reads this line: no traceback
        print(f"libsndfile could not read it ({type(e).__name__})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
