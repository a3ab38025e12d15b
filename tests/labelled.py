"""Labelled songs for tests and benchmarks, rendered offline: Debian's ``mma`` writes a MIDI
accompaniment in a named groove style, ``fluidsynth`` plays it through a General MIDI
soundfont. About 0.4 s per 30-s song. Synthetic, so good for pipeline tests and relative
comparisons, never for claims about real music (see the field notes).

Each song varies key, tempo, chord progression, groove variant and soundfont; its "artist" (the
group a split keeps on one side) is a soundfont and tempo band, written into the file's tags when
``artists`` is asked for.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
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


def available() -> bool:
    return (shutil.which("mma") is not None and shutil.which("fluidsynth") is not None
            and any(Path(s).exists() for s in SOUNDFONTS))


@dataclass(frozen=True)
class Song:
    path: Path
    genre: str
    artist: str


def render(out: Path, genre: str, seconds: float, rng: random.Random, fmt: str = "wav") -> str:
    """One song of ``genre`` at ``out`` (without suffix); returns its artist."""
    lo, hi = TEMPO[genre]
    tempo = rng.randint(lo, hi)
    fonts = [s for s in SOUNDFONTS if Path(s).exists()]
    font = rng.choice(fonts)
    prog = rng.choice(PROGRESSIONS)
    bars = max(2, round(seconds * tempo / 60 / 4))
    lines = [f"Tempo {tempo}", f"Transpose {rng.randint(-5, 6)}",
             f"Groove {rng.choice(STYLES[genre])}"]
    lines += [f"{i + 1} {prog[i % len(prog)]}" for i in range(bars)]
    with tempfile.TemporaryDirectory() as tmp:
        src, mid, wav = Path(tmp, "s.mma"), Path(tmp, "s.mid"), Path(tmp, "s.wav")
        src.write_text("\n".join(lines) + "\n")
        subprocess.run(["mma", "-f", str(mid), str(src)], check=True, capture_output=True)
        subprocess.run(["fluidsynth", "-ni", "-g", "0.7", "-F", str(wav), "-r", "22050", font,
                        str(mid)], check=True, capture_output=True)
        target = out.with_suffix(f".{fmt}")
        if fmt == "wav":
            shutil.move(str(wav), target)
        else:
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-t", str(seconds + 1),
                            str(target)], check=True)
    band = "fast" if tempo >= (lo + hi) / 2 else "slow"
    return f"{genre} {Path(font).stem} {band}"


def render_set(root: Path, genres: list[str], per_genre: int, seconds: float = 12.0,
               seed: int = 0, fmt: str = "wav", artists: bool = False) -> list[Song]:
    """GTZAN layout under ``root``: ``root/<genre>/<genre>-<n>.<fmt>``."""
    rng = random.Random(seed)
    songs = []
    for genre in genres:
        folder = root / genre
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(per_genre):
            base = folder / f"{genre.lower().replace(' ', '')}-{n:04d}"
            artist = render(base, genre, seconds, rng, fmt)
            path = base.with_suffix(f".{fmt}")
            if artists:
                tag_artist(path, artist)
            songs.append(Song(path, genre, artist))
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
