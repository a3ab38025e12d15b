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


# --- the CPU runtime: the same networks as an ONNX graph, compiled by OpenVINO -------------


@pytest.fixture(scope="module")
def openvino_f32():  # type: ignore[no-untyped-def]
    pytest.importorskip("openvino")  # the GPU check's machine runs this file without it
    from tagger.analysis.model.runner import OpenVinoScorer

    return OpenVinoScorer("musicnn", features=True, precision="float32")


def test_openvino_float32_reproduces_the_original_and_the_keras_features(
        openvino_f32, window_model, reference) -> None:  # type: ignore[no-untyped-def]
    from tagger.analysis.model.weights import load_window_model

    got = openvino_f32.score_with_features(reference["inputs"])
    expected = np.concatenate([reference["msd"], reference["mtt"]], axis=1)
    assert np.abs(got[:, :100] - expected).max() < 1e-4
    keras_features = np.asarray(load_window_model("musicnn", features=True)
                                .predict_on_batch(reference["inputs"])[1])
    assert got.shape[1] - 100 == keras_features.shape[1] == 2 * 1506
    assert np.abs(got[:, 100:] - keras_features).max() < 1e-3 * np.abs(keras_features).max()


def test_bfloat16_keeps_the_answer(openvino_f32, reference) -> None:  # type: ignore[no-untyped-def]
    from tagger.analysis.model.runner import OpenVinoScorer, native_bfloat16

    if not native_bfloat16():
        with pytest.raises(RuntimeError, match="bfloat16"):
            OpenVinoScorer("musicnn", precision="bfloat16")
        pytest.skip("this CPU has no native bfloat16: auto runs float32")
    bf16 = OpenVinoScorer("musicnn", precision="bfloat16")
    rng = np.random.default_rng(5)
    # The recorded windows and mixtures of them: 40 windows of real-looking input.
    mix = rng.dirichlet(np.ones(len(reference["inputs"])), size=30).astype(np.float32)
    windows = np.concatenate([reference["inputs"],
                              np.einsum("ki,ift->kft", mix, reference["inputs"])])
    a, b = openvino_f32.score(windows), bf16.score(windows)
    assert np.abs(a - b).max() < 0.05  # measured 0.008 on the recorded windows
    assert (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.95
    song_a, song_b = a.mean(axis=0), b.mean(axis=0)
    assert np.abs(song_a - song_b).max() < 0.01


@pytest.mark.parametrize("int8", [False, True])
def test_the_graph_holds_standard_operators_only(int8: bool) -> None:
    import onnx

    from tagger.analysis.model.graph import build_graph

    graph = onnx.load_from_string(build_graph("musicnn", int8=int8)).graph
    kinds = {n.op_type for n in graph.node}
    allowed = {"Unsqueeze", "Mul", "Add", "Pad", "Conv", "Relu", "MaxPool", "Squeeze", "ReduceMax",
               "ReduceMean", "Concat", "Flatten", "Gemm", "Sigmoid", "Identity"}
    assert kinds <= allowed | ({"QuantizeLinear", "DequantizeLinear"} if int8 else set()), kinds
    assert all(n.domain in ("", "ai.onnx") for n in graph.node)
    # Every weight is in, batch norms folded to a scale and a shift (4 arrays -> 2); the rest
    # are a few axes and paddings (and, in int8, one scale per timbral filter).
    expected = 0
    for net in ("msd", "mtt"):
        with np.load(weights_path(net), allow_pickle=False) as f:
            expected += sum(f[k].size // (2 if "_bn/" in k else 1) for k in f.files)
    got = sum(int(np.prod(t.dims)) for t in graph.initializer)
    assert expected <= got < expected + 200 + (4 * 2 * 204 if int8 else 0)


def test_int8_timbral_convolutions_keep_the_answer(openvino_f32, reference) -> None:  # type: ignore[no-untyped-def]
    """int8 where it pays (the two timbral convolutions, 80 % of the arithmetic), the rest as
    ``auto`` would run it. Its input grid comes from the log-mel range, not from calibration
    data: windows near the top of that range are the hard case, so mixtures and louder copies
    of the recorded windows are checked too."""
    from tagger.analysis.model.runner import OpenVinoScorer

    int8 = OpenVinoScorer("musicnn", precision="int8")
    assert int8.runtime.startswith("openvino int8")
    rng = np.random.default_rng(6)
    mix = rng.dirichlet(np.ones(len(reference["inputs"])), size=30).astype(np.float32)
    windows = np.concatenate([reference["inputs"], np.einsum("ki,ift->kft", mix, reference["inputs"]),
                              np.minimum(reference["inputs"] * 1.5, 7.0)])
    a, b = openvino_f32.score(windows), int8.score(windows)
    assert np.abs(a - b).max() < 0.08  # measured 0.034 on 376 windows of real music
    assert (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.9
    assert np.abs(a.mean(axis=0) - b.mean(axis=0)).max() < 0.02


def test_cpu_analysis_needs_no_deep_learning_framework(tmp_path: Path) -> None:
    """What `predict` and `scan` import on a CPU: not TensorFlow, Keras or JAX (seconds each)."""
    pytest.importorskip("openvino")
    import subprocess
    import sys

    code = ("import sys; from tagger.analysis.engine import Engine; "
            "from tagger.analysis.config import EngineConfig; "
            "e = Engine(EngineConfig(device='cpu')); print(e.scorer.runtime); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split("\n")
    assert out[0].startswith("openvino ") and out[1] == "[]"


def test_the_banded_layout_is_the_same_network(reference) -> None:  # type: ignore[no-untyped-def]
    """The GPU's layout (time taps as channels, the temporal convolutions as one banded product)
    computes musicnn's sums: the references hold, and so do the features."""
    banded = load_window_model("musicnn", features=True, layout="banded")
    direct = load_window_model("musicnn", features=True)
    got, want = banded.predict_on_batch(reference["inputs"]), direct.predict_on_batch(reference["inputs"])
    expected = np.concatenate([reference["msd"], reference["mtt"]], axis=1)
    assert np.abs(np.asarray(got[0]) - expected).max() < 1e-4
    feats, feats_direct = np.asarray(got[1]), np.asarray(want[1])
    assert np.abs(feats - feats_direct).max() < 1e-5 * np.abs(feats_direct).max()


def test_keras_takes_jax_where_tensorflow_is_not_installed(tmp_path: Path) -> None:
    """A GPU machine with JAX alone (TensorFlow's wheel is 1.3 GB): Keras must not fail on a
    missing TensorFlow when KERAS_BACKEND is unset; it takes JAX."""
    pytest.importorskip("jax")
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from tagger.analysis.model.runner import KerasScorer\n"
            "s = KerasScorer('musicnn', 'cpu'); print(s.runtime, s.layout)")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.split("\n")[-2] == "keras jax float32 direct"


SIGNAL_STACK_CHECK = r"""
import gc, os, signal, threading
from tagger.analysis.model.runner import OpenVinoScorer, signal_stack

got = []
signal.signal(signal.SIGTERM, lambda *_: got.append(1))
before = signal_stack()
a = OpenVinoScorer("musicnn", precision="float32")
b = OpenVinoScorer("musicnn", precision="float32")
del a  # the first made goes first: out of order
gc.collect()
held = [OpenVinoScorer("musicnn", precision="float32")]
dropper = threading.Thread(target=held.clear)  # the last one goes on another thread
dropper.start()
dropper.join()
gc.collect()
print("same stack:", signal_stack() == before, before, signal_stack(), flush=True)
for _ in range(200):
    os.kill(os.getpid(), signal.SIGTERM)
print("handled:", len(got) > 0, flush=True)
"""


def test_openvino_leaves_no_signal_stack_behind(tmp_path: Path) -> None:
    """OpenVINO's CPU plugin (2026.4, on a CPU with AMX) gives the thread that starts it an
    alternate signal stack of its own and puts back the one it found when it is destroyed, on
    whichever thread that is: engines dropped out of order, or on another thread, left the main
    thread's signal stack in freed memory, and the next SIGTERM crashed the daemon in Python's
    own signal handler (SIGSEGV, about half the signal-burst tests). Engines made and dropped
    both ways, then 200 signals: handled, and the stack as it was. (Where OpenVINO sets no
    stack, as on CPUs without AMX, this holds either way.)"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", SIGNAL_STACK_CHECK], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr[-2000:])
    assert "same stack: True" in out.stdout and "handled: True" in out.stdout, out.stdout
