"""From the models' 100 raw tags to canonical genres, and from genre scores to the chosen few.

Why this mapping (documented in the README too):

* Only tags that name a genre become genres. Decades (``80s``), moods (``sad``, ``Mellow``),
  voices (``female vocalists``, ``male voice``), instruments (``guitar``, ``sitar``), and
  production words (``instrumental``, ``acoustic``, ``beats``) are never returned as genres; they
  stay in the raw scores (the cache keeps all of them).
* Both networks' tags for one genre feed it (``msd:rock`` and ``mtt:rock`` -> Rock), and a genre's
  score is the highest of its sources: the two networks are calibrated differently and averaging
  would let the one that never saw a genre (MSD has no classical) drown the one that did.
* Sub-genres the data sets tag (Hard Rock, Indie Pop, House, Techno, ...) stay distinct genres
  with a parent, so a player can show "Hard Rock" and a user can fold it up.
* Display names are separator-safe (no ``/``, ``,`` or ``;``: Navidrome and others split on them),
  title-cased with the usual spellings (R&B, Hip-Hop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tagger.analysis.vocabulary import GenreMap


@dataclass(frozen=True)
class Genre:
    name: str
    parent: str | None
    sources: tuple[str, ...]  # raw ``network:tag`` names


GENRES: tuple[Genre, ...] = (
    Genre("Rock", None, ("msd:rock", "mtt:rock")),
    Genre("Alternative", "Rock", ("msd:alternative",)),
    Genre("Alternative Rock", "Rock", ("msd:alternative rock",)),
    Genre("Indie", "Rock", ("msd:indie",)),
    Genre("Indie Rock", "Rock", ("msd:indie rock",)),
    Genre("Classic Rock", "Rock", ("msd:classic rock",)),
    Genre("Hard Rock", "Rock", ("msd:hard rock",)),
    Genre("Progressive Rock", "Rock", ("msd:Progressive rock",)),
    Genre("Punk", "Rock", ("msd:punk",)),
    Genre("Metal", None, ("msd:metal", "mtt:metal")),
    Genre("Heavy Metal", "Metal", ("msd:heavy metal",)),
    Genre("Pop", None, ("msd:pop", "mtt:pop")),
    Genre("Indie Pop", "Pop", ("msd:indie pop",)),
    Genre("Electronic", None, ("msd:electronic", "msd:electronica", "mtt:electronic")),
    Genre("Electro", "Electronic", ("msd:electro",)),
    Genre("Dance", "Electronic", ("msd:dance", "mtt:dance")),
    Genre("House", "Electronic", ("msd:House",)),
    Genre("Techno", "Electronic", ("mtt:techno",)),
    Genre("Ambient", "Electronic", ("msd:ambient", "mtt:ambient")),
    Genre("Chillout", "Electronic", ("msd:chillout",)),
    Genre("New Age", None, ("mtt:new age",)),
    Genre("Hip-Hop", None, ("msd:Hip-Hop",)),
    Genre("R&B", None, ("msd:rnb",)),
    Genre("Soul", None, ("msd:soul",)),
    Genre("Funk", None, ("msd:funk",)),
    Genre("Jazz", None, ("msd:jazz",)),
    Genre("Blues", None, ("msd:blues",)),
    Genre("Country", None, ("msd:country", "mtt:country")),
    Genre("Folk", None, ("msd:folk",)),
    Genre("Easy Listening", None, ("msd:easy listening",)),
    Genre("Experimental", None, ("msd:experimental",)),
    Genre("Classical", None, ("mtt:classical", "mtt:classic")),
    Genre("Opera", "Classical", ("mtt:opera",)),
    Genre("Choral", "Classical", ("mtt:choral",)),
    Genre("Indian", None, ("mtt:indian",)),
)

#: Raw tags that are deliberately not genres, by why (kept as raw scores only).
NOT_GENRES: Mapping[str, tuple[str, ...]] = {
    "era": ("msd:00s", "msd:60s", "msd:70s", "msd:80s", "msd:90s", "msd:oldies"),
    "mood": ("msd:beautiful", "msd:Mellow", "msd:chill", "msd:sad", "msd:happy", "msd:sexy",
             "msd:catchy", "msd:party", "mtt:slow", "mtt:fast", "mtt:loud", "mtt:quiet",
             "mtt:soft", "mtt:weird"),
    "voice": ("msd:female vocalists", "msd:male vocalists", "msd:female vocalist", "mtt:vocal",
              "mtt:female", "mtt:male", "mtt:singing", "mtt:vocals", "mtt:no vocals",
              "mtt:woman", "mtt:male vocal", "mtt:no vocal", "mtt:man", "mtt:choir",
              "mtt:voice", "mtt:male voice", "mtt:female vocal", "mtt:no voice",
              "mtt:female voice"),
    "instrument": ("msd:guitar", "mtt:guitar", "mtt:strings", "mtt:drums", "mtt:piano",
                   "mtt:violin", "mtt:synth", "mtt:harpsichord", "mtt:flute", "mtt:sitar",
                   "mtt:harp", "mtt:cello"),
    "production": ("msd:instrumental", "msd:acoustic", "mtt:beat", "mtt:beats", "mtt:solo"),
}

SEPARATORS = ("/", ",", ";")


def genre_names() -> tuple[str, ...]:
    return tuple(g.name for g in GENRES)


def parent_tree() -> tuple[tuple[str, str], ...]:
    """Child -> parent pairs of the shipped taxonomy (what ``[genres] parents = true`` writes)."""
    return tuple((g.name, g.parent) for g in GENRES if g.parent)


def genres_of(tags: Sequence[str]) -> tuple[str, ...]:
    """The genres a model with these raw tags can name."""
    have = set(tags)
    return tuple(g.name for g in GENRES if any(s in have for s in g.sources))


def genre_scores(tags: Sequence[str], scores: npt.NDArray[np.float32]) -> dict[str, float]:
    """Canonical genre -> score (max over its sources) for the sources this model has."""
    index = {t: i for i, t in enumerate(tags)}
    out: dict[str, float] = {}
    for g in GENRES:
        present = [index[s] for s in g.sources if s in index]
        if present:
            out[g.name] = float(np.max(scores[present]))
    return out


@dataclass(frozen=True)
class Selection:
    """How many genres to keep: the policy, in one typed place."""

    top_k: int = 3
    min_confidence: float = 0.15
    #: Secondary genres must reach this share of the best genre's score.
    relative: float = 0.5
    #: The person's vocabulary ([genres] in the config), applied after the rule.
    genres: GenreMap = field(default_factory=GenreMap)


def choose(genres: Mapping[str, float], sel: Selection) -> list[tuple[str, float]]:
    """Most confident first; empty (abstain) when nothing reaches ``min_confidence``."""
    ranked = sorted(genres.items(), key=lambda kv: (-kv[1], kv[0]))
    if not ranked or ranked[0][1] < sel.min_confidence:
        return []
    floor = max(sel.min_confidence, sel.relative * ranked[0][1])
    return [(name, score) for name, score in ranked[:max(sel.top_k, 0)] if score >= floor]


def album_scores(tracks: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One score per genre for tracks that get one genre set (an album): the mean over the
    tracks (a genre a track's model did not score counts 0 for it)."""
    names = dict.fromkeys(g for t in tracks for g in t)
    return {g: sum(t.get(g, 0.0) for t in tracks) / len(tracks) for g in names} if tracks else {}
