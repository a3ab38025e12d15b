"""Build the window model in code and fill it from the shipped ``.npz`` weight files.

``np.load(..., allow_pickle=False)`` reads plain arrays only: a weight file can never run code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tagger.analysis.features import N_FRAMES, N_MELS
from tagger.analysis.model.catalog import MODELS, NETWORK_TAGS, get_model, weights_path
from tagger.analysis.model.network import (
    BN_LAYERS,
    CONV_LAYERS,
    DENSE_LAYERS,
    TEMPORAL_KERNELS,
    TIMBRAL_KERNELS,
    Layout,
    build_window_network,
    temporal_kernel,
    timbral_kernel,
)

if TYPE_CHECKING:
    import keras

_BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def build_window_model(model: str, features: bool = False, layout: Layout = "direct") -> keras.Model:
    """(windows, 187, 96) log-mel -> (windows, tags) sigmoid scores, weights uninitialised.

    With ``features``, a second output holds each network's pooled features, side by side
    (``FEATURES`` per network): one model call yields the scores and what a trained head needs.
    """
    import keras

    spec = MODELS[model] if model in MODELS else get_model(f"musicnn-{model}")
    inputs = keras.Input((N_FRAMES, N_MELS), name="logmel")
    built = [build_window_network(net, len(NETWORK_TAGS[net]), inputs, layout)
             for net in spec.networks]
    outs, pools = [b[0] for b in built], [b[1] for b in built]
    out = outs[0] if len(outs) == 1 else keras.layers.Concatenate(name="scores")(outs)
    if not features:
        return keras.Model(inputs, out, name=spec.name)
    pooled = pools[0] if len(pools) == 1 else keras.layers.Concatenate(name="features")(pools)
    return keras.Model(inputs, [out, pooled], name=spec.name)


def load_window_model(model: str, features: bool = False, layout: Layout = "direct") -> keras.Model:
    """The window model with the shipped weights of every network it runs."""
    window_model = build_window_model(model, features, layout)
    spec = MODELS[model] if model in MODELS else get_model(f"musicnn-{model}")
    for net in spec.networks:
        with np.load(weights_path(net), allow_pickle=False) as arrays:
            set_network_weights(window_model, net, {k: arrays[k] for k in arrays.files})
    return window_model


def set_network_weights(model: keras.Model, net: str, arrays: dict[str, np.ndarray]) -> None:
    """Copy ``{'layer/weight': array}`` (musicnn's layers, as the weight files name them) into
    the layers named ``{net}_layer``; all must match. In the ``banded`` layout the timbral
    kernels are transposed and the three temporal convolutions joined into one layer."""
    expected = {f"{n}/{w}" for n in CONV_LAYERS + DENSE_LAYERS for w in ("kernel", "bias")}
    expected |= {f"{n}/{w}" for n in BN_LAYERS for w in _BN_WEIGHTS}
    if set(arrays) != expected:
        raise ValueError(f"weights for {net}: missing {sorted(expected - set(arrays))}, "
                         f"unexpected {sorted(set(arrays) - expected)}")

    def put(layer: str, weights: list[np.ndarray]) -> None:
        model.get_layer(f"{net}_{layer}").set_weights(weights)

    banded = any(layer.name == f"{net}_temporal" for layer in model.layers)
    temporal = set(TEMPORAL_KERNELS) if banded else set()
    for name in CONV_LAYERS + DENSE_LAYERS:
        kernel, bias = arrays[f"{name}/kernel"], arrays[f"{name}/bias"]
        if banded and name in TIMBRAL_KERNELS:
            put(name, [timbral_kernel(kernel), bias])
        elif name not in temporal:
            put(name, [kernel, bias])
    for name in BN_LAYERS:
        if name.removesuffix("_bn") not in temporal:
            put(name, [arrays[f"{name}/{w}"] for w in _BN_WEIGHTS])
    if banded:
        put("temporal", list(temporal_kernel({n: arrays[f"{n}/kernel"] for n in temporal},
                                             {n: arrays[f"{n}/bias"] for n in temporal})))
        put("temporal_bn", [np.concatenate([arrays[f"{n}_bn/{w}"] for n in TEMPORAL_KERNELS])
                            for w in _BN_WEIGHTS])
