"""The adaptive budget: its window order, its stopping rule, and the engine carrying it out.

The engine is held to the rule replayed on every window's scores of the same file: the windows
it analysed, in the stages it took, and the song's scores as their mean. Decoded by seeking
(a file that declares its length) and in full (one that does not), one stage after another.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg_encode, music_like

from tagger.analysis.budget import AdaptiveBudget, lead, order
from tagger.analysis.config import EngineConfig
from tagger.analysis.decode import probe
from tagger.analysis.engine import Engine, Prediction
from tagger.analysis.extract import extract_windows, more_windows
from tagger.analysis.model.catalog import get_model

TAGS = get_model("musicnn").tags


@pytest.mark.parametrize("count", [1, 2, 5, 24, 100, 1001])
def test_order_is_a_permutation_whose_every_prefix_covers_the_track(count: int) -> None:
    seq = order(count)
    assert sorted(seq) == list(range(count))
    for n in (4, 8, 16, 32):
        if n > count:
            break
        prefix = sorted(seq[:n])
        gaps = np.diff([-1, *prefix, count])
        # Evenly spread: no gap much longer than count / n (the golden-ratio sequence's gaps
        # take at most three lengths, the longest under 2.7 times the mean).
        assert gaps.max() <= 2.7 * count / n + 1, (n, prefix)
        assert order(count, n) == seq[:n]  # stages only add windows


def test_lead_measures_how_settled_the_top_genre_is() -> None:
    rng = np.random.default_rng(0)
    jazz, rock = TAGS.index("msd:jazz"), TAGS.index("msd:rock")
    steady = np.full((10, len(TAGS)), 0.05, np.float32)
    steady[:, jazz] = 0.8 + 0.01 * rng.standard_normal(10)
    assert lead(TAGS, steady, count=60) > 20
    split = steady.copy()
    split[::2, rock] = 0.9  # half the windows say rock louder than jazz
    split[1::2, rock] = 0.66
    assert lead(TAGS, split, count=60) < 1
    # Every window in: nothing left to learn, however much they disagree.
    assert lead(TAGS, split, count=10) == float("inf")
    rule = AdaptiveBudget(first=4, z=2.0, cap=8, growth=2.0)
    assert rule.settled(TAGS, steady[:4], 60) == 4
    assert rule.settled(TAGS, split[:4], 60) is None
    assert rule.settled(TAGS, split[:8], 60) == 8  # the cap ends it
    assert [rule.next_count(n, 60) for n in (4, 8)] == [8, 8]
    assert rule.next_count(4, 6) == 6


@pytest.fixture(scope="module")
def long_tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """50 s of audio whose halves differ, as FLAC (declares its length: seek-decoded) and as a
    piped Matroska stream (no duration in the header: decoded in full, windows cut from it)."""
    d = tmp_path_factory.mktemp("adaptive")
    rate = 44_100
    pcm = np.concatenate([music_like(25.0, seed=1),
                          0.5 * np.random.default_rng(2).standard_normal(25 * rate)])
    flac = ffmpeg_encode(pcm, rate, d / "halves.flac", ["-c:a", "flac"])
    piped = d / "halves.mka"
    with open(piped, "wb") as out:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(flac), "-c:a", "flac",
                        "-f", "matroska", "-"], stdout=out, check=True)
    return {"seek": flac, "full": piped}


@pytest.mark.parametrize("kind", ["seek", "full"])
@pytest.mark.parametrize("rule", [AdaptiveBudget(first=2, z=-1.0, cap=16),  # settles at once
                                  AdaptiveBudget(first=2, z=1e9, cap=16),  # never settles
                                  AdaptiveBudget(first=3, z=2.0, cap=64)])
def test_engine_does_what_the_rule_says_on_every_windows_scores(
        engine_full: Engine, long_tracks: dict[str, Path], kind: str, rule: AdaptiveBudget) -> None:
    path = long_tracks[kind]
    assert (probe(path).declared is not None) == (kind == "seek")
    full = extract_windows(path, engine_full.config)
    every = engine_full.scorer.score(full.windows)
    count = len(every)
    assert count == 16  # 50 s at 2.992 s per window

    # The rule replayed on the scores of every window, stage by stage.
    n = rule.first
    while rule.settled(TAGS, every[order(count, n)], count) is None:
        n = rule.next_count(n, count)
    expected = every[sorted(order(count, n))].mean(axis=0)

    engine = Engine(EngineConfig(budget=rule, device="cpu", batch_size=5))
    engine.scorer = engine_full.scorer  # one compiled model for the module (same batch rule)
    got = engine.predict(path)
    assert isinstance(got, Prediction)
    assert got.windows == n
    raw = np.array([got.raw[t] for t in TAGS])
    # Seeked windows are decoded from their own segment: the same frames to float rounding.
    tolerance = 2e-3 if kind == "seek" else 1e-6
    assert np.abs(raw - expected).max() < tolerance


def test_stages_add_windows_in_order_and_a_failed_stage_keeps_what_it_has(
        engine_full: Engine, long_tracks: dict[str, Path], tmp_path: Path) -> None:
    cfg = EngineConfig(budget=AdaptiveBudget(first=2, z=0, cap=16))
    copy = tmp_path / "halves.flac"
    copy.write_bytes(long_tracks["seek"].read_bytes())
    first = extract_windows(copy, cfg)
    assert first.seeked and first.count == 16 and first.picks == tuple(order(16, 2))
    second = more_windows(first, 4, cfg)
    assert second.picks == tuple(order(16, 4)) and len(second.windows) == 2
    assert [round(s / 2.992) for s in second.starts] == list(order(16, 4)[2:])
    # The file shrinks between stages (a tag editor rewrote it, a copy was cut): the seek reads
    # short, and no windows are invented.
    copy.write_bytes(copy.read_bytes()[:4096])
    third = more_windows(second, 8, cfg)
    assert len(third.windows) == 0 and third.picks == second.picks


def test_trained_models_and_fixed_budgets_keep_their_windows(engine_full: Engine,
                                                             long_tracks: dict[str, Path]) -> None:
    fixed = extract_windows(long_tracks["seek"], EngineConfig(budget=5))
    assert len(fixed.windows) == 5 and not fixed.grid
    short = extract_windows(long_tracks["seek"], EngineConfig(budget=AdaptiveBudget(first=20)))
    assert len(short.windows) == 16 and not short.grid  # fewer windows than the first stage


def test_open_tracks_never_let_a_library_pile_up(engine_full: Engine,
                                                 long_tracks: dict[str, Path]) -> None:
    """Each track going back for stage after stage must not let the engine pull in more files
    meanwhile: a library of 300,000 would sit in memory waiting for its next stages. What may
    wait is bounded by the decoders in flight, times the stages one track can take (results
    come back in order, so finished tracks wait for the one still open before them)."""
    rule = AdaptiveBudget(first=2, z=1e9, cap=8)  # never settles: 2, 3, 4, 6, 8 windows
    engine = Engine(EngineConfig(budget=rule, device="cpu", batch_size=5, jobs=2))
    engine.scorer = engine_full.scorer
    pulled = 0

    def paths():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for _ in range(40):
            pulled += 1
            yield long_tracks["seek"]

    ahead = max(2 * engine.jobs, 2)
    most = 0
    for done, result in enumerate(engine.predict_paths(paths()), 1):
        assert isinstance(result, Prediction) and result.windows == 8
        most = max(most, pulled - done)
    assert done == 40
    assert most <= ahead * 5, most  # 39 before the fix: the whole "library" was pulled in
