"""The tag -> genre mapping and the choice of genres."""

from __future__ import annotations

import numpy as np

from tagger.analysis.model.catalog import MODELS
from tagger.analysis.taxonomy import (
    GENRES,
    NOT_GENRES,
    SEPARATORS,
    Selection,
    choose,
    genre_names,
    genre_scores,
)

ALL_TAGS = MODELS["musicnn"].tags


def test_every_raw_tag_is_classified_exactly_once() -> None:
    genre_sources = [s for g in GENRES for s in g.sources]
    others = [t for tags in NOT_GENRES.values() for t in tags]
    assert sorted(genre_sources + others) == sorted(ALL_TAGS)


def test_display_names_are_separator_safe_and_unique() -> None:
    names = genre_names()
    assert len(set(names)) == len(names)
    assert not [n for n in names if any(sep in n for sep in SEPARATORS)]
    assert {"Rock", "Pop", "Electronic", "House", "Techno", "Hip-Hop", "R&B", "Jazz",
            "Classical", "Metal", "Punk", "Ambient"} <= set(names)
    parents = {g.parent for g in GENRES if g.parent}
    assert parents <= set(names)


def test_non_genre_tags_are_never_returned_as_genres() -> None:
    scores = np.zeros(len(ALL_TAGS), np.float32)
    for i, tag in enumerate(ALL_TAGS):
        if any(tag in v for v in NOT_GENRES.values()):
            scores[i] = 0.99
    genres = genre_scores(ALL_TAGS, scores)
    assert choose(genres, Selection()) == []  # only moods/decades/voices high: abstain


def test_genre_score_is_the_best_of_its_sources() -> None:
    scores = np.zeros(len(ALL_TAGS), np.float32)
    scores[ALL_TAGS.index("msd:electronic")] = 0.3
    scores[ALL_TAGS.index("mtt:electronic")] = 0.6
    scores[ALL_TAGS.index("mtt:classical")] = 0.2
    g = genre_scores(ALL_TAGS, scores)
    assert g["Electronic"] == np.float32(0.6) and g["Classical"] == np.float32(0.2)


def test_msd_only_model_has_no_classical() -> None:
    g = genre_scores(MODELS["musicnn-msd"].tags, np.full(50, 0.5, np.float32))
    assert "Classical" not in g and "Rock" in g


def test_choose_orders_caps_and_abstains() -> None:
    g = {"Rock": 0.7, "Pop": 0.5, "Metal": 0.4, "Jazz": 0.3, "Folk": 0.05}
    assert choose(g, Selection(top_k=3)) == [("Rock", 0.7), ("Pop", 0.5), ("Metal", 0.4)]
    assert choose(g, Selection(top_k=2)) == [("Rock", 0.7), ("Pop", 0.5)]
    assert choose(g, Selection(relative=0.7)) == [("Rock", 0.7), ("Pop", 0.5)]
    assert choose(g, Selection(min_confidence=0.8)) == []
    assert choose({}, Selection()) == []
