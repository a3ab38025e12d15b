"""Run the window model on fixed-size batches: OpenVINO on a CPU, Keras on a GPU.

Each call has the same shape (the last batch is zero-padded), so the compiled function is built
once and reused: no ``model.predict`` in a loop, whose per-call set-up leaks memory in
long-running processes.

Why two runtimes: on a CPU, OpenVINO runs the ONNX graph of :mod:`tagger.analysis.model.graph`
in about a third of a second from a cold start (TensorFlow takes 4-6 s to import) and, where the
CPU computes bfloat16 natively, with int8 timbral convolutions and bfloat16 elsewhere, twice
as fast as float32 (see ``bench/bench_engine.py``). On
an NVIDIA GPU the Keras model runs on its backend (JAX or TensorFlow), as before.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from tagger.analysis.features import N_FRAMES, N_MELS
from tagger.analysis.model.catalog import get_model, model_version
from tagger.analysis.model.network import FEATURES, Layout
from tagger.errors import EnvironmentProblem, install_hint

if TYPE_CHECKING:
    import keras

Device = Literal["auto", "cpu", "gpu"]
#: On a CPU, ``auto``: where the CPU computes bfloat16 natively (OpenVINO only), ``int8``; else
#: float32. ``int8``: the timbral convolutions in int8, the rest in bfloat16 where native, else
#: float32. On a GPU, ``auto`` is TensorFloat-32 (:class:`KerasScorer`).
Precision = Literal["auto", "float32", "bfloat16", "int8"]
CPU_BATCH = 16  # measured: same per-window speed as 256 on 2 cores, a tenth of the memory
GPU_BATCH = 256


#: What each use of Keras needs installed (the core install has neither Keras nor a backend).
KERAS_FOR = {"gpu": "analysis on a GPU needs Keras with JAX or TensorFlow",
             "train": "training needs Keras with TensorFlow",
             "cpu": "analysis without OpenVINO needs Keras with TensorFlow or JAX"}


def keras_available() -> bool:
    return installed("keras") and (installed("tensorflow") or installed("jax"))


def require_keras(purpose: str) -> None:
    """Say what to install before any work starts, when Keras or its backend is missing."""
    if not keras_available():
        extra = "gpu" if purpose == "gpu" else "train"
        raise EnvironmentProblem(f"{KERAS_FOR[purpose]}, which the core install leaves out: "
                                 f"{install_hint(extra)}")


def configure_backend(device: Device, purpose: str = "gpu") -> None:
    """Choose the device before the backend is imported (it reads these only at import).

    JAX takes three quarters of the GPU's memory at start unless told otherwise; on a home
    server the GPU is shared (a media server's transcoder), so it takes what it uses. With
    fixed batch shapes that is allocated once. Keras is an extra (TensorFlow alone is 1.3 GB):
    without it, ``purpose`` (a key of :data:`KERAS_FOR`) says what to install.
    """
    require_keras(purpose)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if "KERAS_BACKEND" not in os.environ and not installed("tensorflow") and installed("jax"):
        os.environ["KERAS_BACKEND"] = "jax"  # a GPU box with JAX alone: Keras would fail on TF
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        os.environ["JAX_PLATFORMS"] = "cpu"
    if "keras" not in sys.modules:
        with _quiet_native_stderr():
            import keras  # noqa: F401


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules as None: made unimportable on purpose
        return False


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
    """Scores (windows, 187, 96) log-mel arrays with one shipped model (base class)."""

    #: What runs the model, for logs and benchmarks: ``openvino bfloat16``, ``keras jax``, ...
    runtime: str

    def __init__(self, model: str, batch_size: int, features: bool) -> None:
        self.spec = get_model(model)
        self.version = model_version(model)
        self.batch_size = batch_size
        self.features = features
        self.feature_dim = FEATURES * len(self.spec.networks) if features else 0
        self.on_gpu = False
        self._buf = np.zeros((self.batch_size, N_FRAMES, N_MELS), dtype=np.float32)

    @property
    def tags(self) -> tuple[str, ...]:
        return self.spec.tags

    def _run(self, batch: npt.NDArray[np.float32]) -> tuple[np.ndarray, np.ndarray | None]:
        """One full batch: its scores, and its pooled features when asked for."""
        raise NotImplementedError

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
            scores, feats = self._run(self._buf)
            out[i:i + len(chunk), :n_tags] = scores[:len(chunk)]
            if self.features and feats is not None:
                out[i:i + len(chunk), n_tags:] = feats[:len(chunk)]
        return out


class KerasScorer(WindowScorer):
    """The Keras model on its backend: the GPU path, and the reference the tests hold.

    On a GPU, ``precision`` decides the arithmetic of the convolutions and matrix products:
    ``float32`` is exact float32 (the references' tolerance); ``auto`` (and ``int8``, which
    only the CPU runs) lets them use TensorFloat-32 tensor cores where the GPU has them
    (NVIDIA Ampere and later), as JAX and TensorFlow do by default; ``bfloat16`` uses bfloat16
    tensor cores (JAX). Weights and activations stay float32; ``bench/gpu_check.py`` measures
    each against float32.
    """

    def __init__(self, model: str, device: Device = "auto", batch_size: int | None = None,
                 features: bool = False, precision: Precision = "auto",
                 layout: Layout | None = None, purpose: str = "gpu") -> None:
        configure_backend(device, purpose)
        import keras

        from tagger.analysis.model.weights import load_window_model

        on_gpu = device != "cpu" and gpu_visible()
        if device == "gpu" and not on_gpu:
            raise RuntimeError("--device gpu was asked for, but the backend sees no GPU")
        super().__init__(model, batch_size or (GPU_BATCH if on_gpu else CPU_BATCH), features)
        self.on_gpu = on_gpu
        backend = keras.backend.backend()
        arithmetic = _gpu_arithmetic(precision, backend) if on_gpu else "float32"
        if backend == "tensorflow" and on_gpu:
            import tensorflow as tf

            tf.config.experimental.enable_tensor_float_32_execution(arithmetic != "float32")
        self.runtime = f"keras {backend} {arithmetic}"
        #: JAX's matmul and convolution precision, set around every call (it is part of the
        #: compiled function's key, read when traced).
        self._jax_precision = arithmetic if backend == "jax" else None
        #: Measured on an H200 (bench/gpu_check.py): ``banded`` on a GPU, musicnn's own on a CPU.
        self.layout: Layout = layout or ("banded" if on_gpu else "direct")
        self.model: keras.Model = load_window_model(model, features, self.layout)

    def _run(self, batch: npt.NDArray[np.float32]) -> tuple[np.ndarray, np.ndarray | None]:
        if self._jax_precision is None:
            got = self.model.predict_on_batch(batch)
        else:
            import jax

            # Read when the call is traced (the first one): the compiled function keeps it.
            with jax.default_matmul_precision(self._jax_precision):
                got = self.model.predict_on_batch(batch)
        if self.features:
            return np.asarray(got[0]), np.asarray(got[1])
        return np.asarray(got), None


def _gpu_arithmetic(precision: Precision, backend: str) -> str:
    """The GPU arithmetic ``precision`` asks for: float32, tensorfloat32 or bfloat16."""
    if precision == "float32":
        return "float32"
    if precision == "bfloat16":
        if backend != "jax":
            raise RuntimeError("--precision bfloat16 on a GPU needs KERAS_BACKEND=jax")
        return "bfloat16"
    return "tensorfloat32"


def openvino() -> ModuleType:
    """OpenVINO, without its usage telemetry.

    ``import openvino`` imports its model converter, which starts Intel's telemetry (Google
    Analytics, on unless a consent file says otherwise; it writes ``~/intel/`` and sends from a
    child process). genre-tagger never runs that converter and never goes on the network: with
    ``openvino_telemetry`` made unimportable, OpenVINO falls back to its own no-op stub.
    """
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    return importlib.import_module("openvino")


class _SignalStack(ctypes.Structure):
    """Linux's ``stack_t`` (``sigaltstack(2)``)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


def signal_stack() -> tuple[int, int, int] | None:
    """This thread's alternate signal stack: ``(address, flags, size)``; None off Linux."""
    if sys.platform != "linux":
        return None
    got = _SignalStack()
    if ctypes.CDLL(None, use_errno=True).sigaltstack(None, ctypes.byref(got)) != 0:
        return None
    return got.ss_sp or 0, got.ss_flags, got.ss_size


@contextmanager
def signal_stack_kept() -> Iterator[None]:
    """Run OpenVINO's start-up with this thread's alternate signal stack put back after it.

    OpenVINO's CPU plugin (2026.4 on a CPU with AMX, measured) gives the thread that starts a
    plugin a 20 KB alternate signal stack of its own, and when the plugin is destroyed puts
    back the stack it found, on whichever thread destroys it. Two engines dropped out of
    order, or one dropped on another thread, left the main thread's signal stack in freed
    memory; Python's handlers run there (``SA_ONSTACK``), so the daemon's next SIGTERM was a
    SIGSEGV in CPython's signal_handler (half the signal-burst tests). OpenVINO installs no
    handler of its own that needs the stack, so the one found before is put back at once, and
    every plugin then puts back that same, living, stack.
    """
    before = signal_stack()
    try:
        yield
    finally:
        if before is not None and signal_stack() != before:
            sp, flags, size = before
            stack = _SignalStack(sp or None, flags, size)
            ctypes.CDLL(None, use_errno=True).sigaltstack(ctypes.byref(stack), None)


def native_bfloat16(core: Any = None) -> bool:
    """Whether OpenVINO finds bfloat16 arithmetic in this CPU (AVX512_BF16, AMX)."""
    with signal_stack_kept():
        core = core or openvino().Core()
        return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoScorer(WindowScorer):
    """The ONNX graph of the same networks, compiled by OpenVINO for this CPU.

    One request at a time on every core (``LATENCY``): measured no slower than one
    single-threaded stream per core with requests in flight together, while decoding shares
    the cores, and simpler.
    """

    def __init__(self, model: str, batch_size: int | None = None, features: bool = False,
                 precision: Precision = "auto") -> None:
        super().__init__(model, batch_size or CPU_BATCH, features)
        with signal_stack_kept():
            self._start(model, precision)

    def _start(self, model: str, precision: Precision) -> None:
        from tagger.analysis.model.graph import build_graph

        core = openvino().Core()
        bf16 = native_bfloat16(core)
        if precision == "auto":
            precision = "int8" if bf16 else "float32"
        elif precision == "bfloat16" and not bf16:
            raise RuntimeError("--precision bfloat16 was asked for, but this CPU does not "
                               "compute bfloat16 natively (no AVX512_BF16 or AMX)")
        net = core.read_model(build_graph(model, int8=precision == "int8"))
        net.reshape({"logmel": [self.batch_size, N_FRAMES, N_MELS]})
        rest = "bf16" if precision == "bfloat16" or (precision == "int8" and bf16) else "f32"
        self.compiled = core.compile_model(net, "CPU", {
            "INFERENCE_PRECISION_HINT": rest, "PERFORMANCE_HINT": "LATENCY"})
        self._request = self.compiled.create_infer_request()
        self.runtime = f"openvino {precision}" + (
            f" (the rest {'bfloat16' if rest == 'bf16' else 'float32'})" if precision == "int8" else "")
        self.precision: Precision = precision

    def _run(self, batch: npt.NDArray[np.float32]) -> tuple[np.ndarray, np.ndarray | None]:
        got = self._request.infer({0: batch})
        return got[0], got[1] if self.features else None


def _openvino_available() -> bool:
    try:
        openvino()
    except ImportError:
        return False
    return True


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver with a GPU, seen without importing a deep-learning backend (seconds)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def window_scorer(model: str, device: Device = "auto", batch_size: int | None = None,
                  features: bool = False, precision: Precision = "auto") -> WindowScorer:
    """The fastest way to run ``model`` here: Keras on a GPU (asked for, or ``auto`` with an
    NVIDIA GPU present), else OpenVINO on the CPU (Keras if OpenVINO is not installed)."""
    # auto with a GPU but no Keras (the core install): OpenVINO on the CPU, as without a GPU
    if device == "gpu" or (device == "auto" and nvidia_gpu_present() and keras_available()):
        keras_scorer = KerasScorer(model, device, batch_size, features, precision)
        if keras_scorer.on_gpu or not _openvino_available():
            return keras_scorer
    if not _openvino_available():
        if precision == "bfloat16":
            raise RuntimeError("--precision bfloat16 needs OpenVINO: pip install openvino")
        return KerasScorer(model, "cpu", batch_size, features, purpose="cpu")
    return OpenVinoScorer(model, batch_size, features, precision)
