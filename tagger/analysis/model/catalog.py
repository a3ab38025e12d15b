"""The models genre-tagger ships: which networks they run and what their outputs mean."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

#: The 50 Million Song Dataset (last.fm) tags of ``MSD_musicnn``, in output order.
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill",
    "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental",
    "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy",
    "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop",
    "sad", "House", "happy",
)

#: The 50 MagnaTagATune tags of ``MTT_musicnn``, in output order.
MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman",
    "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice",
    "new age", "dance", "male voice", "female vocal", "beats", "harp", "cello", "no voice",
    "weird", "country", "metal", "female voice", "choral",
)

NETWORK_TAGS = {"msd": MSD_TAGS, "mtt": MTT_TAGS}


@dataclass(frozen=True)
class ModelSpec:
    """A shipped model: one or more musicnn networks run on the same windows."""

    name: str
    networks: tuple[str, ...]
    description: str

    @property
    def tags(self) -> tuple[str, ...]:
        """Raw output names, ``network:tag`` (both vocabularies have e.g. ``rock``)."""
        return tuple(f"{net}:{tag}" for net in self.networks for tag in NETWORK_TAGS[net])


MODELS = {
    "musicnn": ModelSpec("musicnn", ("msd", "mtt"),
                         "MSD_musicnn + MTT_musicnn on the same windows (100 tags, default)"),
    "musicnn-msd": ModelSpec("musicnn-msd", ("msd",),
                             "MSD_musicnn only (50 last.fm tags, no classical; half the cost)"),
    "musicnn-mtt": ModelSpec("musicnn-mtt", ("mtt",), "MTT_musicnn only (50 MagnaTagATune tags)"),
}
DEFAULT_MODEL = "musicnn"


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


def weights_path(network: str) -> Path:
    """The shipped weight file of one network (inside the installed package)."""
    return Path(str(resources.files("tagger.models") / f"musicnn_{network}.npz"))


@cache
def model_version(name: str) -> str:
    """``name@hash`` of the weight files: the cache re-analyses when this changes."""
    h = hashlib.sha256()
    for net in get_model(name).networks:
        h.update(weights_path(net).read_bytes())
    return f"{name}@{h.hexdigest()[:12]}"
