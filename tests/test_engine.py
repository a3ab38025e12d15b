"""The engine: cross-track batching, order, failures that do not stop the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg_encode, music_like

from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Engine, Failure, Prediction
from tagger.analysis.extract import extract_windows


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("tracks")
    lengths = [4.0, 13.0, 7.0, 2.0, 10.0]  # 1, 4, 2, 1 (padded), 3 windows
    return [ffmpeg_encode(music_like(s, seed=i), 44_100, d / f"t{i}.flac", ["-c:a", "flac"])
            for i, s in enumerate(lengths)]


def test_scores_do_not_depend_on_how_tracks_share_batches(engine_full: Engine, tracks: list[Path]) -> None:
    """Batch 3 splits tracks across calls and mixes tracks in one call; batch 16 holds all."""
    small = Engine(EngineConfig(budget=None, batch_size=3, device="cpu"))
    a = list(small.predict_paths(tracks))
    b = list(engine_full.predict_paths(tracks))
    assert [r.path for r in a] == [r.path for r in b] == [str(t) for t in tracks]
    for x, y in zip(a, b):
        assert isinstance(x, Prediction) and isinstance(y, Prediction)
        assert x.windows == y.windows
        assert max(abs(x.raw[k] - y.raw[k]) for k in x.raw) < 1e-5


def test_song_score_is_the_mean_of_its_window_scores(engine_full: Engine, tracks: list[Path]) -> None:
    result = engine_full.predict(tracks[1])
    assert isinstance(result, Prediction) and result.windows == 4
    windows = extract_windows(tracks[1], engine_full.config).windows
    per_window = engine_full.scorer.score(windows)
    expected = per_window.mean(axis=0)
    got = np.array([result.raw[t] for t in engine_full.scorer.tags])
    assert np.abs(got - expected).max() < 1e-6


def test_a_bad_file_fails_alone_and_in_place(engine_full: Engine, tracks: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\x00not audio" * 100)
    paths = [tracks[0], bad, tmp_path / "vanished.ogg", tracks[2]]
    results = list(engine_full.predict_paths(paths))
    assert [type(r) for r in results] == [Prediction, Failure, Failure, Prediction]
    assert [r.code for r in results if isinstance(r, Failure)] == ["not-audio", "missing"]


def test_prediction_fields(engine_full: Engine, tracks: list[Path]) -> None:
    r = engine_full.predict(tracks[4])
    assert isinstance(r, Prediction)
    assert len(r.raw) == 100 and all(0.0 <= v <= 1.0 for v in r.raw.values())
    assert r.model_version == engine_full.model.version
    chosen = engine_full.model.choose(r.genre_scores, engine_full.config.selection)
    names = [g for g, _ in chosen]
    assert len(names) <= 3 and all(g in r.genre_scores for g in names)
    assert [s for _, s in chosen] == sorted((s for _, s in chosen), reverse=True)
    assert abs(r.seconds - 10.0) < 0.1


def test_decoding_runs_with_one_blas_thread() -> None:
    """The decoders' mel product is tiny: BLAS's own threads only spun beside it (34 ms of CPU
    per file, 5 without; README "Speed"). One BLAS thread once an engine exists."""
    from threadpoolctl import threadpool_info

    engine = Engine(EngineConfig(device="cpu"))
    try:
        threads = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        assert threads and set(threads) == {1}, threads
    finally:
        engine.close()


def test_files_decoded_at_once() -> None:
    """Told: as told. Not told: up to 4 when the model shares the CPU, every core with a GPU."""
    import os

    from tagger.analysis.config import auto_jobs

    cpus = os.cpu_count() or 1
    assert auto_jobs(on_gpu=False) == min(4, cpus) and auto_jobs(on_gpu=True) == cpus
    engine = Engine(EngineConfig(device="cpu"))
    told = Engine(EngineConfig(device="cpu", jobs=3))
    try:
        assert engine.jobs == min(4, cpus) and told.jobs == 3
    finally:
        engine.close()
        told.close()
