#!/usr/bin/env python3
"""Convert musicnn's TF1 checkpoints into genre-tagger's weight files, and record references.

Run by a developer, never at install or run time::

    pip download --no-deps musicnn==0.1.0 -d /tmp/mnn
    pip install tensorflow-cpu && pip install --no-deps tf_keras   # only to run the TF1 graph
    python tools/convert_musicnn.py /tmp/mnn/musicnn-0.1.0-py3-none-any.whl

It writes ``tagger/models/musicnn_{msd,mtt}.npz`` (plain arrays, loaded with
``allow_pickle=False``) and ``tests/data/musicnn_reference.npz``: fixed input windows and the
original TF1 graph's sigmoid outputs on them, which ``tests/test_model_fidelity.py`` checks our
Keras model against. Finally it checks that very thing here and prints the largest difference.

Traps handled (found running musicnn under TensorFlow 2.21): ``tf.compat.v1.layers`` needs
``TF_USE_LEGACY_KERAS=1`` with ``tf_keras``; ``tf.train.load_checkpoint(dir)`` fails because the
shipped ``checkpoint`` file names its author's home folder, so the reader is pointed at the
empty-prefix files directly; musicnn's extractor hides a failed restore behind a bare except, so
we compare every restored variable with the checkpoint.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NETWORKS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}

# Graph-creation order in musicnn/models.py::build_musicnn -> our layer names.
CONV_ORDER = ["timbral74", "timbral77", "temporal128", "temporal64", "temporal32",
              "mid1", "mid2", "mid3"]
BN_ORDER = ["input_bn", "timbral74_bn", "timbral77_bn", "temporal128_bn", "temporal64_bn",
            "temporal32_bn", "mid1_bn", "mid2_bn", "mid3_bn", "pool_bn", "dense_bn"]
DENSE_ORDER = ["dense", "logits"]


def _tf_name(base: str, i: int) -> str:
    return base if i == 0 else f"{base}_{i}"


def convert(checkpoint_dir: Path) -> dict[str, np.ndarray]:
    """Read one checkpoint into ``{'layer/weight': array}`` in Keras' shapes."""
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(str(checkpoint_dir) + "/")
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(CONV_ORDER):
        kernel = reader.get_tensor(f"{_tf_name('conv2d', i)}/kernel")
        if name.startswith("mid"):  # [7, C, 1, F] 2-D kernel == [7, C, F] 1-D kernel
            kernel = kernel[:, :, 0, :]
        out[f"{name}/kernel"] = kernel
        out[f"{name}/bias"] = reader.get_tensor(f"{_tf_name('conv2d', i)}/bias")
    for i, name in enumerate(BN_ORDER):
        for w in ("gamma", "beta", "moving_mean", "moving_variance"):
            out[f"{name}/{w}"] = reader.get_tensor(f"{_tf_name('batch_normalization', i)}/{w}")
    for i, name in enumerate(DENSE_ORDER):
        out[f"{name}/kernel"] = reader.get_tensor(f"{_tf_name('dense', i)}/kernel")
        out[f"{name}/bias"] = reader.get_tensor(f"{_tf_name('dense', i)}/bias")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def reference_inputs() -> np.ndarray:
    """Fixed windows: a synthetic mix through our features, noise at feature scale, silence."""
    from tagger.analysis.features import N_FRAMES, N_MELS, SAMPLE_RATE, cut_windows, log_mel, window_starts

    rng = np.random.default_rng(20190101)
    t = np.arange(SAMPLE_RATE * 10) / SAMPLE_RATE
    notes = [110.0, 138.6, 164.8, 220.0]
    mix = sum(0.2 * np.sin(2 * np.pi * f * t * (1 + 0.001 * k)) for k, f in enumerate(notes))
    kick = np.exp(-((t % 0.5) * 40)) * np.sin(2 * np.pi * 55 * t)
    audio = (mix + 0.6 * kick + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    frames = log_mel(audio)
    real = cut_windows(frames, window_starts(len(frames), hop=93))
    noise = rng.uniform(0, 4, size=(4, N_FRAMES, N_MELS)).astype(np.float32)
    silence = np.zeros((1, N_FRAMES, N_MELS), np.float32)
    return np.concatenate([real, noise, silence]).astype(np.float32)


def run_original(wheel_root: Path, network: str, inputs: np.ndarray) -> np.ndarray:
    """Child process body: the original TF1 graph's sigmoid outputs for ``inputs``."""
    import warnings

    import tensorflow as tf

    warnings.filterwarnings("ignore", category=UserWarning)  # tf.compat.v1.layers deprecations

    tf.compat.v1.disable_eager_execution()
    sys.path.insert(0, str(wheel_root))
    from musicnn import models  # type: ignore[import-not-found]

    n_tags = 50
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y = models.define_model(x, is_training, NETWORKS[network], n_tags)[0]
        scores = tf.nn.sigmoid(y)
    sess = tf.compat.v1.Session()
    saver = tf.compat.v1.train.Saver()
    ckpt = wheel_root / "musicnn" / NETWORKS[network]
    saver.restore(sess, str(ckpt) + "/")
    reader = tf.compat.v1.train.NewCheckpointReader(str(ckpt) + "/")
    for var in tf.compat.v1.global_variables():  # a silent failed restore would poison references
        name = var.name.split(":")[0]
        if not np.array_equal(sess.run(var), reader.get_tensor(name)):
            raise SystemExit(f"variable {name} did not restore")
    return np.concatenate([sess.run(scores, {x: inputs[i:i + 1], is_training: False})
                           for i in range(len(inputs))])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("wheel", type=Path, help="musicnn-0.1.0-py3-none-any.whl")
    p.add_argument("--models-dir", type=Path, default=REPO / "tagger" / "models")
    p.add_argument("--reference", type=Path, default=REPO / "tests" / "data" / "musicnn_reference.npz")
    p.add_argument("--child", nargs=3, metavar=("ROOT", "NET", "IO"), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:  # original-graph subprocess: legacy Keras must be chosen before TF loads
        root, net, io = args.child
        with np.load(io) as f:
            inputs = f["inputs"]
        np.savez(io, inputs=inputs, outputs=run_original(Path(root), net, inputs))
        return

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wheel"
        with zipfile.ZipFile(args.wheel) as z:
            z.extractall(root)
        inputs = reference_inputs()
        ref: dict[str, np.ndarray] = {"inputs": inputs}
        for net, folder in NETWORKS.items():
            weights = convert(root / "musicnn" / folder)
            out = args.models_dir / f"musicnn_{net}.npz"
            np.savez_compressed(out, **weights)
            print(f"{out}: {len(weights)} arrays, {sum(w.size for w in weights.values()):,} parameters")
            io = Path(tmp) / f"{net}.npz"
            np.savez(io, inputs=inputs)
            env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
            subprocess.run([sys.executable, __file__, str(args.wheel), "--child", str(root), net,
                            str(io)], check=True, env=env)
            with np.load(io) as f:
                ref[net] = f["outputs"]
        np.savez_compressed(args.reference, **ref)
        print(f"{args.reference}: {len(inputs)} windows")

    from tagger.analysis.model.weights import load_window_model

    for net in NETWORKS:
        model = load_window_model(net)
        diff = np.abs(np.asarray(model.predict_on_batch(inputs)) - ref[net]).max()
        print(f"{net}: max |keras - tf1| = {diff:.2e}")


if __name__ == "__main__":
    main()
