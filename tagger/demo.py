"""Synthesise a few short pieces of music so ``genre-tagger demo`` works offline, anywhere.

They are crude on purpose (a drum machine, a piano-like chord study, distorted power chords),
but they are music-shaped enough for the model to tell them apart.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 44_100
Audio = npt.NDArray[np.float64]


def _t(seconds: float) -> Audio:
    return np.arange(int(seconds * RATE)) / RATE


def _env(n: int, decay: float) -> Audio:
    return np.exp(-np.arange(n) / RATE * decay)


def _place(out: Audio, sound: Audio, at: float) -> None:
    i = int(at * RATE)
    n = min(len(sound), len(out) - i)
    if n > 0:
        out[i:i + n] += sound[:n]


def techno(seconds: float = 20.0, bpm: float = 128.0) -> Audio:
    """Four-on-the-floor kick, off-beat hats, a sawtooth bass line."""
    rng = np.random.default_rng(1)
    out = np.zeros(int(seconds * RATE))
    beat = 60.0 / bpm
    tk = _t(0.3)
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-tk * 30)) * tk) * _env(len(tk), 12)
    hat = rng.standard_normal(int(0.05 * RATE)) * _env(int(0.05 * RATE), 80) * 0.3
    notes = [55.0, 55.0, 65.4, 49.0]
    for i in range(int(seconds / beat)):
        _place(out, kick, i * beat)
        _place(out, hat, i * beat + beat / 2)
        tb = _t(beat / 2)
        f = notes[(i // 4) % len(notes)]
        saw = 2 * ((tb * f) % 1.0) - 1
        _place(out, 0.25 * saw * _env(len(tb), 6), i * beat + beat / 2)
    return out


def piano(seconds: float = 20.0) -> Audio:
    """Slow arpeggiated triads of decaying harmonic tones."""
    out = np.zeros(int(seconds * RATE))
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6),
              (196.0, 246.9, 293.7)]
    step = 0.4
    for i in range(int(seconds / step)):
        f = chords[(i // 6) % 4][i % 3] * (2 if (i // 3) % 2 else 1)
        tn = _t(2.0)
        tone = sum(np.sin(2 * np.pi * f * h * tn) / h**1.5 for h in range(1, 8))
        _place(out, 0.2 * tone * _env(len(tn), 2.5), i * step)
    return out


def rock(seconds: float = 20.0, bpm: float = 140.0) -> Audio:
    """Distorted power chords over kick and snare."""
    rng = np.random.default_rng(2)
    out = np.zeros(int(seconds * RATE))
    beat = 60.0 / bpm
    roots = [82.4, 82.4, 110.0, 98.0]
    for bar in range(int(seconds / (4 * beat))):
        tb = _t(4 * beat)
        f = roots[bar % len(roots)]
        chord = sum(2 * ((tb * ff) % 1.0) - 1 for ff in (f, 1.5 * f, 2 * f))
        _place(out, 0.35 * np.tanh(4 * chord), bar * 4 * beat)
        for b in range(4):
            tk = _t(0.2)
            kick = np.sin(2 * np.pi * (60 + 80 * np.exp(-tk * 25)) * tk) * _env(len(tk), 15)
            _place(out, 0.8 * kick, (bar * 4 + b) * beat)
            if b % 2:
                snare = rng.standard_normal(int(0.15 * RATE)) * _env(int(0.15 * RATE), 25)
                _place(out, 0.5 * snare, (bar * 4 + b) * beat)
    return out


PIECES = {"drum-machine": techno, "chord-study": piano, "power-chords": rock}
FORMATS = {"mp3": ["-c:a", "libmp3lame", "-q:a", "4"], "flac": ["-c:a", "flac"],
           "ogg": ["-c:a", "libvorbis"], "m4a": ["-c:a", "aac", "-b:a", "160k"]}


def write_demo(folder: Path) -> list[Path]:
    """Write each piece in a different format into ``folder``; return the files."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("the demo needs ffmpeg on PATH (e.g. apt install ffmpeg)")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for (name, make), (ext, args) in zip(PIECES.items(), FORMATS.items()):
        audio = make()
        pcm = (np.clip(audio / max(1e-9, np.abs(audio).max()) * 0.9, -1, 1) * 32767).astype("<i2")
        out = folder / f"{name}.{ext}"
        subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar", str(RATE),
                        "-ac", "1", "-i", "-", *args, str(out)], input=pcm.tobytes(), check=True)
        paths.append(out)
    return paths
