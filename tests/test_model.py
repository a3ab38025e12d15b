"""The converted model against the original TF1 graph, and the MIL wrapper traced."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tagger.analysis.model.catalog import MODELS, MSD_TAGS, MTT_TAGS, model_version, weights_path
from tagger.analysis.model.mil import build_song_model, mean_by_track
from tagger.analysis.model.weights import load_window_model

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def window_model():  # type: ignore[no-untyped-def]
    return load_window_model("musicnn")


def test_reproduces_the_original_tf1_graph_for_every_window(window_model, reference) -> None:  # type: ignore[no-untyped-def]
    out = np.asarray(window_model.predict_on_batch(reference["inputs"]))
    expected = np.concatenate([reference["msd"], reference["mtt"]], axis=1)
    assert out.shape == expected.shape == (len(reference["inputs"]), 100)
    per_window = np.abs(out - expected).max(axis=1)
    assert per_window.max() < 1e-4, per_window
    # The references are not degenerate: windows differ and scores move.
    assert expected.std(axis=0).mean() > 0.01


@pytest.mark.parametrize("net", ["msd", "mtt"])
def test_single_network_models_match_their_half(net, reference) -> None:  # type: ignore[no-untyped-def]
    model = load_window_model(f"musicnn-{net}")
    out = np.asarray(model.predict_on_batch(reference["inputs"]))
    assert np.abs(out - reference[net]).max() < 1e-4


def test_weight_files_hold_plain_arrays_only() -> None:
    for net in ("msd", "mtt"):
        with np.load(weights_path(net), allow_pickle=False) as f:  # raises on any object array
            assert all(f[k].dtype == np.float32 for k in f.files)
            assert sum(f[k].size for k in f.files) == 792_079


def test_model_has_no_code_carrying_layers(window_model) -> None:  # type: ignore[no-untyped-def]
    kinds = {type(layer).__name__ for layer in window_model.layers}
    assert "Lambda" not in kinds and "TFOpLambda" not in kinds


def test_catalogue() -> None:
    assert MODELS["musicnn"].tags == tuple(f"msd:{t}" for t in MSD_TAGS) + tuple(f"mtt:{t}" for t in MTT_TAGS)
    assert model_version("musicnn").startswith("musicnn@") and len(model_version("musicnn")) == 20


def test_mean_by_track() -> None:
    scores = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = mean_by_track(scores, [1, 3, 2])
    np.testing.assert_allclose(out, [[0, 1], [4, 5], [9, 10]])
    with pytest.raises(ValueError):
        mean_by_track(scores, [2, 2])


def test_mil_song_model_is_exact_when_traced_with_changing_window_counts(window_model) -> None:  # type: ignore[no-untyped-def]
    """The trap: TimeDistributed+GlobalAveragePooling1D drifts once traced. Ours must not."""
    song = build_song_model(window_model)
    rng = np.random.default_rng(7)
    for n_windows in (3, 5, 2, 5, 1):  # retraces and reuses traces in a mixed order
        windows = rng.uniform(0, 4, size=(2, n_windows, 187, 96)).astype(np.float32)
        mask = np.ones((2, n_windows), np.float32)
        mask[1, n_windows // 2 + 1:] = 0  # second track is shorter, padded and masked
        got = np.asarray(song.predict_on_batch({"windows": windows, "window_mask": mask}))
        per_window = np.asarray(window_model.predict_on_batch(windows.reshape(-1, 187, 96)))
        per_window = per_window.reshape(2, n_windows, -1)
        keep = n_windows // 2 + 1
        expected = np.stack([per_window[0].mean(0), per_window[1, :keep].mean(0)])
        assert np.abs(got - expected).max() < 1e-5, n_windows


def test_jax_backend_gives_the_same_scores(reference) -> None:  # type: ignore[no-untyped-def]
    """Backend-neutral Keras: the same code and weights under KERAS_BACKEND=jax."""
    pytest.importorskip("jax")
    import subprocess
    import sys

    code = ("import numpy as np, keras; from tagger.analysis.model.weights import load_window_model;"
            "assert keras.backend.backend() == 'jax';"
            f"f = np.load({str(REFERENCE)!r}); m = load_window_model('musicnn');"
            "o = np.asarray(m.predict_on_batch(f['inputs']));"
            "e = np.concatenate([f['msd'], f['mtt']], 1); print(np.abs(o - e).max())")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-4
