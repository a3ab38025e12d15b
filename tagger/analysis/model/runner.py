"""Run the window model on fixed-size batches, on the GPU when one is visible.

Each call has the same shape (the last batch is zero-padded), so the compiled predict function is
traced once and reused: no ``model.predict`` in a loop, whose per-call set-up leaks memory in
long-running processes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from tagger.analysis.features import N_FRAMES, N_MELS
from tagger.analysis.model.catalog import get_model, model_version
from tagger.analysis.model.network import FEATURES

if TYPE_CHECKING:
    import keras

Device = Literal["auto", "cpu", "gpu"]
CPU_BATCH = 16  # measured: same per-window speed as 256 on 2 cores, a tenth of the memory
GPU_BATCH = 256


def configure_backend(device: Device) -> None:
    """Choose the device before the backend is imported (it reads these only at import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        os.environ["JAX_PLATFORMS"] = "cpu"
    if "keras" not in sys.modules:
        with _quiet_native_stderr():
            import keras  # noqa: F401


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide what TensorFlow's C++ side prints while it loads (absl and oneDNN banners that no
    log level silences). Python errors still surface: they are raised after fd 2 is back."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def gpu_visible() -> bool:
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return False


class WindowScorer:
    """Scores (windows, 187, 96) log-mel arrays with one shipped model."""

    def __init__(self, model: str, device: Device = "auto", batch_size: int | None = None,
                 features: bool = False) -> None:
        configure_backend(device)
        from tagger.analysis.model.weights import load_window_model

        self.spec = get_model(model)
        self.version = model_version(model)
        self.on_gpu = device != "cpu" and gpu_visible()
        if device == "gpu" and not self.on_gpu:
            raise RuntimeError("--device gpu was asked for, but the backend sees no GPU")
        self.batch_size = batch_size or (GPU_BATCH if self.on_gpu else CPU_BATCH)
        self.features = features
        self.model: keras.Model = load_window_model(model, features)
        self.feature_dim = FEATURES * len(self.spec.networks) if features else 0
        self._buf = np.zeros((self.batch_size, N_FRAMES, N_MELS), dtype=np.float32)

    @property
    def tags(self) -> tuple[str, ...]:
        return self.spec.tags

    def score(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Per-window sigmoid scores, in batches of exactly ``batch_size`` windows."""
        return self.score_with_features(windows)[:, :len(self.tags)]

    def score_with_features(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Per window, the scores followed by its pooled features (with ``features``; one
        array, so the engine's queue keeps one kind of row)."""
        n_tags = len(self.tags)
        out = np.empty((len(windows), n_tags + self.feature_dim), dtype=np.float32)
        for i in range(0, len(windows), self.batch_size):
            chunk = windows[i:i + self.batch_size]
            self._buf[:len(chunk)] = chunk
            self._buf[len(chunk):] = 0.0
            got = self.model.predict_on_batch(self._buf)
            if self.features:
                out[i:i + len(chunk), :n_tags] = np.asarray(got[0])[:len(chunk)]
                out[i:i + len(chunk), n_tags:] = np.asarray(got[1])[:len(chunk)]
            else:
                out[i:i + len(chunk)] = np.asarray(got)[:len(chunk)]
        return out
