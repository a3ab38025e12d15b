"""Training that generalises (issue 25): a head trained on songs played with one instrument set
keeps new songs of the same styles played with another, each through its own recording chain
(encoder and bitrate, loudness, EQ, sample rate), as a person's library has them.

Real rendered songs (``tests/labelled.py``), the real engine, a real SQLite cache, the trainer's
own functions. ``bench/bench_train.py`` measures the same at a larger size, in both directions,
with spread over seeds and draws.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from labelled import MUSESCORE, TIMGM, available, render_set

from tagger.analysis.config import FIXED_BUDGET, EngineConfig
from tagger.analysis.model.trained import forward
from tagger.cache import Cache
from tagger.training.head import pad
from tagger.training.labels import Labelled, LabelSet
from tagger.training.trainer import Bags, TrainOptions, fit_model, gather, predictions

STYLES = ["Polka", "Rock", "Swing", "Tango"]
#: Of 32 shifted songs (4 styles: chance 0.25). The songs render the same on every run (mma's
#: humanising is seeded per song): the default head 0.844 (answered 91 %, top-1 0.906), the
#: autopool head (the default before issue 25) 0.656. Before the seed, renders differed run to
#: run and the default head ranged 0.69-0.88 over five runs (one CI run failed the bound).
BOUND = 0.75


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Bags]:
    if not available() or not Path(MUSESCORE).exists():
        pytest.fail("mma, fluidsynth, TimGM6mb and MuseScore's soundfont are needed (apt install "
                    "mma fluidsynth timgm6mb-soundfont musescore-general-soundfont-small)")
    root = tmp_path_factory.mktemp("shift")
    sets = {"train": render_set(root / "train", STYLES, 12, seconds=20, seed=21, fonts=(TIMGM,)),
            "shifted": render_set(root / "shifted", STYLES, 8, seconds=20, seed=22,
                                  fonts=(MUSESCORE,), shifted=True)}
    out = {}
    with Cache(f"sqlite:///{root / 'cache.sqlite'}") as cache:
        for name, rendered in sets.items():
            files = [Labelled(str(s.path), (s.genre,), f"file:{s.path}") for s in rendered]
            labels = LabelSet(files, {}, [])
            out[name] = gather(labels, EngineConfig(device="cpu", budget=FIXED_BUDGET), cache,
                               lambda _s: None)  # as `train` analyses
            assert not out[name].failures and len(out[name].files) == len(files)
    return out


def accuracy(pooling: str, songs: dict[str, Bags]) -> tuple[float, float, float]:
    """(accuracy, share answered, accuracy never abstaining) on the shifted songs of a head
    trained on the others."""
    arrays, thresholds, _ = fit_model(songs["train"], STYLES, False,
                                      TrainOptions(pooling, seed=0), lambda _s: None)  # type: ignore[arg-type]
    test = songs["shifted"]
    x, m = pad(test.bags)
    probs = forward(pooling, arrays, x, m, False)  # type: ignore[arg-type]
    answers = predictions(probs, STYLES, thresholds, False)
    truth = [f.genres[0] for f in test.files]
    return (float(np.mean([a == t for a, t in zip(answers, truth)])),
            float(np.mean([a is not None for a in answers])),
            float(np.mean([STYLES[int(i)] == t for i, t in zip(probs.argmax(axis=1), truth)])))


@pytest.mark.slow  # 140 s of rendering and analysis: CI runs it with -m slow
def test_the_default_head_keeps_songs_played_with_other_instruments(
        songs: dict[str, Bags]) -> None:
    """The bound fails the default before issue 25, the autopool MIL head over every stored
    feature; the linear SVM on the mid-end features passes it."""
    svm, answered, top1 = accuracy("svm", songs)
    autopool, a_answered, a_top1 = accuracy("autopool", songs)
    print(f"shifted: svm {svm:.3f} (answered {answered:.0%}, top-1 {top1:.3f}), autopool "
          f"{autopool:.3f} (answered {a_answered:.0%}, top-1 {a_top1:.3f})")
    assert svm >= BOUND, (svm, autopool)


def test_the_default_head_says_when_its_folds_cannot_judge_and_never_tags_every_song() -> None:
    """One group per genre (one artist each): holding a group out leaves its genre without
    songs, so the folds cannot choose C; the head says so and keeps the defaults. With several
    genres per song, no threshold is 0.00 (that would write the genre on every song)."""
    from tagger.training import margin

    rng = np.random.default_rng(0)
    n, dims = 30, 3012
    bags = [(rng.normal(size=(3, dims)) + i % 3).astype(np.float32) for i in range(n)]
    y = np.zeros((n, 3), np.float32)
    y[np.arange(n), np.arange(n) % 3] = 1
    main = [str(i % 3) for i in range(n)]
    said: list[str] = []
    _, oof, summary = margin.fit(bags, y, np.ones(n, np.float32), main,
                                 [f"artist:{i % 3}" for i in range(n)], False, 0, said.append)
    assert oof is None and summary["validation_songs"] == 0
    assert any("too few to cross-validate" in s for s in said), said
    assert margin.thresholds(oof, y, False).tolist() == [0.0] * 3

    several = y.copy()
    several[::4, 1] = 1
    _, oof, summary = margin.fit(bags, several, np.ones(n, np.float32), main,
                                 [f"file:{i}" for i in range(n)], True, 0, said.append)
    assert oof is not None and summary["folds"] == 5
    assert min(margin.thresholds(oof, several, True)) > 0.0
