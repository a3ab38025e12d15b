"""The GPU path (Keras on JAX or TensorFlow) gives the CPU's answers.

Skipped on a machine without an NVIDIA GPU (CI has none). ``bench/gpu_check.sh`` runs this file
with ``tests/test_model.py`` on a GPU machine under ``KERAS_BACKEND=jax``, then measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tagger.analysis.model.runner import KerasScorer, nvidia_gpu_present

pytestmark = pytest.mark.skipif(not nvidia_gpu_present(), reason="no NVIDIA GPU on this machine")

REFERENCE = Path(__file__).parent / "data" / "musicnn_reference.npz"


@pytest.fixture(scope="module")
def windows() -> dict[str, np.ndarray]:
    """The original musicnn's recorded windows and scores, and mixtures of those windows (70
    windows of real-looking input, as the CPU precision tests use)."""
    with np.load(REFERENCE, allow_pickle=False) as f:
        ref = {k: f[k] for k in f.files}
    mix = np.random.default_rng(5).dirichlet(np.ones(len(ref["inputs"])), size=30)
    ref["mixed"] = np.concatenate([ref["inputs"], np.einsum("ki,ift->kft", mix.astype(np.float32),
                                                            ref["inputs"])])
    return ref


@pytest.fixture(scope="module")
def exact() -> KerasScorer:
    return KerasScorer("musicnn", "gpu", features=True, precision="float32")


def test_float32_on_the_gpu_reproduces_the_original(exact: KerasScorer,
                                                    windows: dict[str, np.ndarray]) -> None:
    assert exact.on_gpu and exact.runtime.endswith(" float32") and exact.batch_size == 256
    got = exact.score(windows["inputs"])  # 40 windows: one padded batch
    expected = np.concatenate([windows["msd"], windows["mtt"]], axis=1)
    assert np.abs(got - expected).max() < 1e-4  # the CPU's tolerance (test_model.py)


@pytest.mark.parametrize("precision", ["auto", "bfloat16"])
def test_tensor_core_precisions_keep_the_answer(precision: str, exact: KerasScorer,
                                                windows: dict[str, np.ndarray]) -> None:
    """``auto`` (TensorFloat-32) is the GPU's default, as int8 + bfloat16 is the CPU's: held to
    the CPU's bfloat16 tolerances against float32."""
    import keras

    if precision == "bfloat16" and keras.backend.backend() != "jax":
        pytest.skip("bfloat16 arithmetic on a GPU is JAX's")
    fast = KerasScorer("musicnn", "gpu", features=True, precision=precision)  # type: ignore[arg-type]
    assert fast.runtime.endswith("tensorfloat32" if precision == "auto" else "bfloat16")
    a, b = exact.score(windows["mixed"]), fast.score(windows["mixed"])
    assert np.abs(a - b).max() < 0.05
    assert (a.argmax(axis=1) == b.argmax(axis=1)).mean() >= 0.95
    assert np.abs(a.mean(axis=0) - b.mean(axis=0)).max() < 0.01


def test_batches_of_any_size_give_the_same_scores(exact: KerasScorer,
                                                  windows: dict[str, np.ndarray]) -> None:
    """A window's scores do not depend on what shares its batch or on the padding."""
    small = KerasScorer("musicnn", "gpu", batch_size=64, features=True, precision="float32")
    a = exact.score_with_features(windows["mixed"])
    b = small.score_with_features(windows["mixed"][::-1])[::-1]
    assert np.abs(a - b).max() < 1e-4 * max(1.0, float(np.abs(a).max()))


_CPU_CHILD = """
import json, sys
from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Engine
engine = Engine(EngineConfig(device="cpu", precision="float32", budget=6))
out = {r.path: r.genre_scores for r in engine.predict_paths(sys.argv[1:])}
print(json.dumps({"runtime": engine.scorer.runtime, "scores": out}))
"""


def test_the_engine_on_the_gpu_matches_the_cpu(audio_files: dict[str, Path]) -> None:
    """Every format, end to end: decoded on this machine's CPUs, scored on the GPU, against the
    same windows scored on the CPU (OpenVINO, or Keras where it is not installed) in a
    process that sees no GPU."""
    from tagger.analysis.config import EngineConfig
    from tagger.analysis.engine import Engine, Prediction

    engine = Engine(EngineConfig(device="gpu", precision="float32", budget=6))
    assert engine.scorer.on_gpu and engine.jobs == os.cpu_count()
    paths = [str(p) for p in audio_files.values()]
    got = list(engine.predict_paths(paths))
    assert all(isinstance(r, Prediction) for r in got), got
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="-1", JAX_PLATFORMS="cpu")
    cpu = json.loads(subprocess.run([sys.executable, "-c", _CPU_CHILD, *paths], env=env, check=True,
                                    capture_output=True, text=True).stdout.splitlines()[-1])
    for r in got:
        assert isinstance(r, Prediction)
        theirs = cpu["scores"][r.path]
        diff = max(abs(r.genre_scores[g] - theirs[g]) for g in theirs)
        assert diff < 1e-3, (r.path, cpu["runtime"], diff)
