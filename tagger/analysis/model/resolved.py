"""The one answer to "which model?": a model setting (a shipped network's name, or a file from
``genre-tagger train``) resolved once into a :class:`Model`, which every part that needs one
asks: its version (what the cache records), its base (whose windows and features it uses), its
genre scores from a stored analysis, how it chooses genres, and its budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from tagger.analysis.budget import AdaptiveBudget
from tagger.analysis.config import FIXED_BUDGET, EngineConfig
from tagger.analysis.model.catalog import get_model, model_version
from tagger.analysis.model.trained import Float32Array, TrainedModel, is_trained, load, trained_scores
from tagger.analysis.taxonomy import Selection, choose, genre_names, genre_scores, genres_of
from tagger.analysis.vocabulary import choose_mapped


@dataclass(frozen=True)
class Model:
    """A shipped network (``trained`` None), or a trained head on one."""

    name: str  # the setting as given
    trained: TrainedModel | None

    @property
    def base(self) -> str:
        """The shipped network whose windows and features this model uses."""
        return self.trained.base if self.trained else self.name

    @property
    def version(self) -> str:
        """What the cache records for this model's predictions (a trained file's: its hash)."""
        return self.trained.version if self.trained else model_version(self.name)

    @property
    def base_version(self) -> str:
        """The version stored features are kept under (any model on this base reads them)."""
        return model_version(self.base)

    @property
    def tags(self) -> tuple[str, ...]:
        """The base network's raw tags."""
        return tuple(get_model(self.base).tags)

    def scores(self, bag: Float32Array | None, raw: Mapping[str, float]) -> dict[str, float] | None:
        """Genre -> score from one analysis (a stored one, or just made): a trained head on the
        track's bag of window features, else the shipped taxonomy on the song's raw tag scores.
        None when that analysis cannot answer (no bag, a bag the head refuses, raw scores of
        another tag set)."""
        if self.trained is not None:
            if bag is None:
                return None
            try:
                return trained_scores(self.trained, bag)
            except ValueError:  # not ours to trust: analysed again
                return None
        tags = self.tags
        if not all(t in raw for t in tags):
            return None
        return genre_scores(tags, np.asarray([raw[t] for t in tags], np.float32))

    def choose(self, genres: Mapping[str, float], selection: Selection) -> list[tuple[str, float]]:
        """The genres to write: a trained model's per-class thresholds, else the shipped
        taxonomy's confidence rule; then the selection's genre map."""
        return choose_mapped(self.trained.choose if self.trained else choose, genres, selection)

    def config(self, config: EngineConfig) -> EngineConfig:
        """``config`` as this model runs it. The adaptive budget stops once the base model's top
        genre is settled; a trained head decides from features, so it gets a fixed budget
        (features cached by an adaptive scan hold the windows that scan took)."""
        return _fixed_budget(config) if self.trained else config

    def learning_config(self, config: EngineConfig) -> EngineConfig:
        """``config`` as a head learns from it: the base network's features, with the fixed
        budget a trained head gets whichever model the setting names (the adaptive rule would
        stop once the shipped model's top genre is settled, which says nothing of new labels)."""
        return _fixed_budget(replace(config, model=self.base))

    def vocabulary(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The genres this model can name, and other genre names its training labels had (left
        out by the map or too rare): names a genre map may mention without being a mistake."""
        if self.trained:
            return (tuple(self.trained.classes),
                    tuple(self.trained.meta.get("training", {}).get("vocabulary", ())))
        # Every shipped genre is a known word, so one map serves all shipped models.
        return genres_of(get_model(self.name).tags), genre_names()


def _fixed_budget(config: EngineConfig) -> EngineConfig:
    if isinstance(config.budget, AdaptiveBudget):
        return replace(config, budget=FIXED_BUDGET)
    return config


def open_model(name: str) -> Model:
    """The model a setting names; a trained file is read (and checked) here, once
    (:class:`tagger.analysis.model.trained.ModelFileError` says what is wrong with it)."""
    return Model(name, load(name) if is_trained(name) else None)
