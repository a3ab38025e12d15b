"""Segment decoder child: ``python -m tagger.analysis.segment_server``, one request per line.

Why a long-lived child: seeking to a track's analysis windows with a new ffmpeg process costs
about 60 ms to start and 20-30 ms of CPU per window (measured: ``bench/bench_engine.py``); with the
adaptive budget taking a track in stages, that cost more than the model. libsndfile and soxr in a
child that stays up decode a window in about 7 ms. It stays a child process so that a libsndfile
crash on a hostile file ends only this child; the parent then uses ffmpeg for that file.

Request: one JSON line ``{"path": hex of the path's bytes, "rate": 16000, "segments": [[first
sample, count], ...]}`` (samples at ``rate``; as :func:`tagger.analysis.decode.decode_segments`
asks ffmpeg: from ``max(first, 0)``, at most ``count - (max(first, 0) - first)`` samples, fewer
where the file ends). Answer: a JSON line ``{"ok": true, "lengths": [...]}`` followed by that
many float32 samples, or ``{"ok": false, "error": "..."}``. End of input ends the child.
"""

from __future__ import annotations

import json
import sys
from math import ceil, gcd

import numpy as np
import soundfile as sf  # loaded when the child starts, before any request: see SegmentReader.warm
import soxr

from tagger.analysis.sndfile_child import downmix

#: Samples (at the output rate) decoded beyond each end of a segment, so that the resampler's
#: edges fall outside it.
MARGIN = 256


def segments(path: bytes, rate: int, wanted: list[tuple[int, int]]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    with sf.SoundFile(path) as f:
        sr, total = f.samplerate, f.frames
        if f.channels > 2:  # ffmpeg's downmix matrices for surround are its own: leave it them
            raise ValueError(f"{f.channels} channels")
        # An input frame that falls exactly on an output sample every `step` frames: decoding
        # from one makes output sample k of the piece output sample `o0 + k` of the track.
        step, per = sr // gcd(sr, rate), rate // gcd(sr, rate)
        for first, count in wanted:
            begin = max(first, 0)
            want = count - (begin - first)
            block = max(0, begin - MARGIN) // per
            p0, o0 = block * step, block * per
            p1 = min(total, ceil((begin + want + MARGIN) * sr / rate) + 1)
            if p0 >= p1:
                out.append(np.zeros(0, np.float32))
                continue
            f.seek(p0)
            # Mixed as ffmpeg mixes stereo (each side at -3 dB): seeked windows and windows of
            # a full decode (ffmpeg's) are the same numbers.
            mono = downmix(f.read(p1 - p0, dtype="float32", always_2d=True))
            res = soxr.resample(mono, sr, rate, quality="HQ") if sr != rate else mono
            out.append(np.ascontiguousarray(res[begin - o0:begin - o0 + want], np.float32))
    return out


def main() -> int:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            pieces = segments(bytes.fromhex(req["path"]), int(req["rate"]),
                              [(int(a), int(b)) for a, b in req["segments"]])
        except Exception as e:  # whatever it is, the parent decodes this file with ffmpeg
            msg = " ".join(str(e).split())[:300] or type(e).__name__
            out.write(json.dumps({"ok": False, "error": msg}).encode() + b"\n")
        else:
            out.write(json.dumps({"ok": True, "lengths": [len(p) for p in pieces]}).encode()
                      + b"\n")
            for p in pieces:
                out.write(p.tobytes())
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
