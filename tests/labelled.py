"""Labelled songs for tests and benchmarks, rendered offline: Debian's ``mma`` writes a MIDI
accompaniment in a named groove style, ``fluidsynth`` plays it through a General MIDI
soundfont. About 0.4 s per 30-s song. Synthetic, so good for pipeline tests and relative
comparisons, never for claims about real music (see the field notes).

Each song varies key, tempo, chord progression, groove variant and soundfont; its "artist" (the
group a split keeps on one side) is a soundfont and tempo band, written into the file's tags when
``artists`` is asked for.

A *shifted* set differs from a training set in what real libraries differ in (issue 25): other
instruments (``fonts``: another soundfont), and with ``chain`` each song its own recording chain:
encoder and bitrate, loudness, EQ and sample rate (:func:`chain_for`).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

#: Genre label -> mma grooves of that style (variants a song picks from).
STYLES: dict[str, tuple[str, ...]] = {
    "Tango": ("Tango", "Tango1", "TangoClean"),
    "Bossa Nova": ("BossaNova", "BossaNovaPlus", "BossaNova1Sus"),
    "Rock": ("BasicRock", "BasicRock4", "50sRock", "60sRock"),
    "Swing": ("Swing", "SwingWalk", "Swing1", "Swing2"),
    "Polka": ("Polka", "PolkaArp", "Polka1"),
    "Trance": ("Trance", "Trance1", "Trance2"),
    "Waltz": ("Waltz", "Waltz1", "WaltzWalk"),
    "March": ("March", "March1", "March2"),
    "Country": ("CountrySwing", "CountrySwing1", "CountrySwing2"),
    "Blues": ("Blues", "BluesTriple", "Blues1"),
    "Ska": ("Ska", "Ska1", "SkaClap"),
    "Samba": ("SambaPlus", "SambaSus", "SambaSusPlus"),
}
TEMPO = {"Tango": (110, 130), "Bossa Nova": (120, 145), "Rock": (110, 150), "Swing": (120, 180),
         "Polka": (110, 140), "Trance": (128, 145), "Waltz": (90, 180), "March": (100, 125),
         "Country": (110, 150), "Blues": (70, 120), "Ska": (140, 180), "Samba": (90, 110)}
PROGRESSIONS = (
    ("C", "Am", "F", "G7"), ("Am", "Dm", "E7", "Am"), ("C", "F", "C", "G7"),
    ("Dm7", "G7", "Cmaj7", "A7"), ("C", "C7", "F", "Fm"), ("Em", "Am", "D7", "G"),
    ("F", "Bb", "C7", "F"), ("G", "Em", "C", "D7"),
)
SOUNDFONTS = ("/usr/share/sounds/sf2/TimGM6mb.sf2", "/usr/share/sounds/sf2/FluidR3_GM.sf2")
#: Instrument sets for shifted sets: Debian's timgm6mb-soundfont (6 MB, what CI installs),
#: fluid-soundfont-gm (FluidR3, 145 MB) and musescore-general-soundfont-small (39 MB, SF3).
TIMGM = "/usr/share/sounds/sf2/TimGM6mb.sf2"
FLUID = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
MUSESCORE = "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"
#: A recording chain's choices: container and codec arguments (encoder and bitrate).
ENCODERS = {
    "mp3-96": ("mp3", ["-c:a", "libmp3lame", "-b:a", "96k"]),
    "mp3-v2": ("mp3", ["-c:a", "libmp3lame", "-q:a", "2"]),
    "ogg-q3": ("ogg", ["-c:a", "libvorbis", "-q:a", "3"]),
    "m4a-128": ("m4a", ["-c:a", "aac", "-b:a", "128k"]),
    "flac": ("flac", ["-c:a", "flac"]),
    "opus-64": ("opus", ["-c:a", "libopus", "-b:a", "64k"]),
}


def available() -> bool:
    return (shutil.which("mma") is not None and shutil.which("fluidsynth") is not None
            and any(Path(s).exists() for s in SOUNDFONTS))


@dataclass(frozen=True)
class Song:
    path: Path
    genre: str
    artist: str


@dataclass(frozen=True)
class Chain:
    """How one song was recorded and encoded after it was played."""

    encoder: str  # a key of ENCODERS
    gain_db: float  # loudness
    bass_db: float  # EQ: a shelf at 120 Hz
    treble_db: float  # EQ: a shelf at 6 kHz
    rate: int  # the sample rate it was played and encoded at

    def filters(self) -> str:
        return (f"volume={self.gain_db:.1f}dB,bass=g={self.bass_db:.1f}:f=120,"
                f"treble=g={self.treble_db:.1f}:f=6000,alimiter=limit=0.97")


def chain_for(rng: random.Random) -> Chain:
    """A random recording chain: any encoder, -12..+4 dB, +-8 dB of bass and treble, one of
    four sample rates: wider than one library's, narrower than a studio's worst."""
    return Chain(rng.choice(sorted(ENCODERS)), round(rng.uniform(-12, 4), 1),
                 round(rng.uniform(-8, 8), 1), round(rng.uniform(-8, 8), 1),
                 rng.choice((22050, 32000, 44100, 48000)))


def render(out: Path, genre: str, seconds: float, rng: random.Random, fmt: str = "wav",
           fonts: tuple[str, ...] | None = None, chain: Chain | None = None) -> Song:
    """One song of ``genre`` at ``out`` (without suffix, the format's added): played with one of
    ``fonts`` (else any of SOUNDFONTS here), then through ``chain`` if given (its own encoder,
    else ``fmt``). Its artist is its soundfont and tempo band."""
    lo, hi = TEMPO[genre]
    tempo = rng.randint(lo, hi)
    usable = [s for s in (fonts or SOUNDFONTS) if Path(s).exists()]
    if not usable:
        raise FileNotFoundError(f"none of the soundfonts {fonts or SOUNDFONTS} is installed")
    font = rng.choice(usable)
    prog = rng.choice(PROGRESSIONS)
    bars = max(2, round(seconds * tempo / 60 / 4))
    lines = [f"Tempo {tempo}", f"Transpose {rng.randint(-5, 6)}",
             f"Groove {rng.choice(STYLES[genre])}"]
    lines += [f"{i + 1} {prog[i % len(prog)]}" for i in range(bars)]
    # mma's grooves humanise timing and volume with its own random numbers, seeded from the
    # clock unless told: the same song must render to the same file (a test's bound was met or
    # missed by which notes moved). The seed comes from the song, not from ``rng``, so the
    # songs drawn stay the ones drawn before.
    lines.insert(0, f"RndSeed {zlib.crc32(chr(10).join(lines).encode())}")
    with tempfile.TemporaryDirectory() as tmp:
        src, mid, wav = Path(tmp, "s.mma"), Path(tmp, "s.mid"), Path(tmp, "s.wav")
        src.write_text("\n".join(lines) + "\n")
        subprocess.run(["mma", "-f", str(mid), str(src)], check=True, capture_output=True)
        rate = chain.rate if chain else 22050
        subprocess.run(["fluidsynth", "-ni", "-g", "0.7", "-F", str(wav), "-r", str(rate), font,
                        str(mid)], check=True, capture_output=True)
        band = "fast" if tempo >= (lo + hi) / 2 else "slow"
        if chain is not None:
            ext, codec = ENCODERS[chain.encoder]
            target = out.with_suffix(f".{ext}")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-t", str(seconds + 1),
                            "-af", chain.filters(), "-ar", str(48000 if ext == "opus" else rate),
                            *codec, str(target)], check=True)
        elif fmt == "wav":
            target = out.with_suffix(".wav")
            shutil.move(str(wav), target)
        else:
            target = out.with_suffix(f".{fmt}")
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-t", str(seconds + 1),
                            str(target)], check=True)
    return Song(target, genre, f"{genre} {Path(font).stem} {band}")


def render_set(root: Path, genres: list[str], per_genre: int, seconds: float = 12.0,
               seed: int = 0, fmt: str = "wav", artists: bool = False,
               fonts: tuple[str, ...] | None = None, shifted: bool = False) -> list[Song]:
    """GTZAN layout under ``root``: ``root/<genre>/<genre>-<n>.<fmt>``; ``fonts``: the
    instrument sets to draw from; ``shifted``: each song through its own recording chain."""
    rng = random.Random(seed)
    songs = []
    for genre in genres:
        folder = root / genre
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_genre):
            base = folder / f"{genre.lower().replace(' ', '')}-{n:04d}"
            chain = chain_for(rng) if shifted else None
            song = render(base, genre, seconds, rng, fmt, fonts, chain)
            if artists:
                tag_artist(song.path, song.artist)
            songs.append(song)
    return songs


def tag_artist(path: Path, artist: str) -> None:
    import mutagen

    f = mutagen.File(path, easy=True)
    if f is None:
        return
    if f.tags is None:
        f.add_tags()
    f.tags["artist"] = [artist]
    f.save()
