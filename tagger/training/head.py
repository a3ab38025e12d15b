"""The trainable head in Keras 3 (backend-neutral: TensorFlow here, JAX on a GPU box).

Input: each song's bag of instances (features of its windows, standardised) and a mask for the
padding; output: the song's class probabilities. The loss is computed on the song's labels,
never the windows' (multiple-instance learning). Poolings compared in ``bench/bench_train.py``:

* ``linear``: mean of the instances, then one dense layer (the plain baseline);
* ``mean``: a hidden layer scores each instance, probabilities averaged over the bag;
* ``attention``: Ilse, Tomczak & Welling (2018): learnt weights over the instances' hidden
  vectors, then one dense layer;
* ``autopool``: McFee, Salamon & Bello (2018): per class, softmax(alpha * p) over instances
  weights their probabilities (alpha 0: mean; large: max), alpha learnt per class. The
  default: tied best with many labels and the steadiest with few (the README's table).

The same arithmetic runs in NumPy at prediction time (:func:`tagger.analysis.model.trained.forward`):
only the weights leave this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from tagger.analysis.model.trained import Float32Array, Pooling

NEG = -1e9


def _layers() -> dict[str, type]:
    """The custom layers, built on first use (Keras loads only when training)."""
    import keras
    from keras import ops

    class MaskedMean(keras.layers.Layer):
        def call(self, x: Any, valid: Any) -> Any:
            m = ops.expand_dims(valid, -1)
            return ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)

    class AttentionPool(keras.layers.Layer):
        def __init__(self, units: int, **kw: Any) -> None:
            super().__init__(**kw)
            self.units = units

        def build(self, x_shape: Any, valid_shape: Any) -> None:
            self.v = self.add_weight(shape=(x_shape[-1], self.units), name="v",
                                     initializer="glorot_uniform")
            self.w = self.add_weight(shape=(self.units, 1), name="w", initializer="glorot_uniform")

        def call(self, x: Any, valid: Any) -> Any:
            score = ops.squeeze(ops.matmul(ops.tanh(ops.matmul(x, self.v)), self.w), -1)
            a = ops.softmax(ops.where(valid > 0, score, NEG), axis=1)
            return ops.sum(x * ops.expand_dims(a, -1), axis=1)

    class AutoPool(keras.layers.Layer):
        def __init__(self, normalise: bool, **kw: Any) -> None:
            super().__init__(**kw)
            self.normalise = normalise

        def build(self, x_shape: Any, valid_shape: Any) -> None:
            self.alpha = self.add_weight(shape=(x_shape[-1],), name="alpha",
                                         initializer="zeros")

        def call(self, x: Any, valid: Any) -> Any:
            m = ops.expand_dims(valid, -1)
            w = ops.softmax(ops.where(m > 0, self.alpha * x, NEG), axis=1)
            pooled = ops.sum(w * x, axis=1)
            if self.normalise:
                pooled = pooled / ops.sum(pooled, axis=-1, keepdims=True)
            return pooled

    return {"MaskedMean": MaskedMean, "AttentionPool": AttentionPool, "AutoPool": AutoPool}


def build(pooling: Pooling, dims: int, n_classes: int, multi_label: bool, hidden: int = 128,
          dropout: float = 0.3, l2: float = 1e-4) -> Any:
    import keras
    from keras import layers

    L = _layers()
    act = "sigmoid" if multi_label else "softmax"
    reg = keras.regularizers.L2(l2)
    x_in = keras.Input((None, dims), name="instances")
    m_in = keras.Input((None,), name="mask")
    x = layers.Dropout(dropout, name="in_dropout")(x_in)
    if pooling == "linear":
        z = L["MaskedMean"](name="pool")(x, m_in)
        out = layers.Dense(n_classes, activation=act, kernel_regularizer=reg, name="out")(z)
        return keras.Model([x_in, m_in], out)
    h = layers.Dense(hidden, activation="relu", kernel_regularizer=reg, name="hidden")(x)
    h = layers.Dropout(dropout, name="hidden_dropout")(h)
    if pooling == "attention":
        z = L["AttentionPool"](64, name="attention")(h, m_in)
        out = layers.Dense(n_classes, activation=act, kernel_regularizer=reg, name="out")(z)
    elif pooling == "mean":
        p = layers.Dense(n_classes, activation=act, kernel_regularizer=reg, name="out")(h)
        out = L["MaskedMean"](name="pool")(p, m_in)
    else:
        p = layers.Dense(n_classes, activation=act, kernel_regularizer=reg, name="out")(h)
        out = L["AutoPool"](not multi_label, name="autopool")(p, m_in)
    return keras.Model([x_in, m_in], out)


def weights_of(model: Any, pooling: Pooling) -> dict[str, Float32Array]:
    """The trained weights under the names :mod:`tagger.analysis.model.trained` reads."""
    out: dict[str, Float32Array] = {}
    for layer in ("hidden", "out"):
        if pooling == "linear" and layer == "hidden":
            continue
        kernel, bias = model.get_layer(layer).get_weights()
        out[f"{layer}/kernel"], out[f"{layer}/bias"] = kernel, bias
    if pooling == "attention":
        v, w = model.get_layer("attention").get_weights()
        out["attention/v"], out["attention/w"] = v, w
    if pooling == "autopool":
        out["autopool/alpha"] = model.get_layer("autopool").get_weights()[0]
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def pad(bags: list[Float32Array]) -> tuple[Float32Array, Float32Array]:
    """Bags of different sizes -> (songs, most instances, dims) zero-padded + (songs, most) mask."""
    k = max(len(b) for b in bags)
    x = np.zeros((len(bags), k, bags[0].shape[1]), np.float32)
    m = np.zeros((len(bags), k), np.float32)
    for i, b in enumerate(bags):
        x[i, :len(b)] = b
        m[i, :len(b)] = 1.0
    return x, m


def fit(pooling: Pooling, x: Float32Array, m: Float32Array, y: Float32Array, w: Float32Array,
        val: tuple[Float32Array, Float32Array, Float32Array] | None, multi_label: bool, seed: int,
        epochs: int, patience: int, say: Callable[[str], None] | None = None,
        ) -> tuple[dict[str, Float32Array], list[dict[str, float]]]:
    """Train on standardised bags ``x`` (mask ``m``), labels ``y`` and per-song weights ``w``;
    stop when the validation loss has not improved for ``patience`` epochs and keep the best
    epoch's weights. Returns the weights and the curve (loss and validation loss per epoch)."""
    from tagger.analysis.model.runner import configure_backend

    configure_backend("auto", "train")  # quiet native start-up, as for analysis
    import keras

    keras.utils.set_random_seed(seed)
    _deterministic()
    model = build(pooling, x.shape[-1], y.shape[-1], multi_label)
    loss = "binary_crossentropy" if multi_label else "categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    curve: list[dict[str, float]] = []
    rng = np.random.default_rng(seed)
    best: tuple[float, list[Any]] | None = None
    since_best = 0
    batch = 32
    # train_on_batch, not fit(): no tf.data pipeline (its start-up banners, its threads), and
    # the shuffling is ours, so a seed fixes every batch.
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        losses = []
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            losses.append(float(np.asarray(model.train_on_batch([x[idx], m[idx]], y[idx],
                                                                sample_weight=w[idx]))))
        point: dict[str, float] = {"epoch": epoch, "loss": round(float(np.mean(losses)), 5)}
        if val is not None:
            v = float(np.asarray(model.test_on_batch([val[0], val[1]], val[2])))
            point["val_loss"] = round(v, 5)
            if best is None or v < best[0] - 1e-6:
                best, since_best = (v, model.get_weights()), 0
            else:
                since_best += 1
        curve.append(point)
        if say and (epoch <= 3 or epoch % 10 == 0):
            say(f"  epoch {epoch:3d}: loss {point['loss']:.4f}"
                + (f", validation loss {point['val_loss']:.4f}" if "val_loss" in point else ""))
        if val is not None and since_best >= patience:
            break
    if best is not None:
        model.set_weights(best[1])  # the epoch with the lowest validation loss
    return weights_of(model, pooling), curve


def _deterministic() -> None:
    """Same seed, same model: TensorFlow's kernels pick deterministic paths when asked."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with contextlib.suppress(AttributeError, RuntimeError):
            tf.config.experimental.enable_op_determinism()
