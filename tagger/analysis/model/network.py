"""The musicnn window CNN (Pons & Serra, 2019) rebuilt in backend-neutral Keras 3.

The layer graph mirrors ``musicnn/models.py::build_musicnn`` from the ``musicnn==0.1.0`` wheel
so that its TF1 checkpoints load one to one (see ``tools/convert_musicnn.py``). Only stock Keras
layers are used: the architecture lives here, in code, and a weights file only ever holds arrays.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from tagger.analysis.features import N_FRAMES, N_MELS

if TYPE_CHECKING:
    import keras

# Front end: 1.6 * 128 timbral filters and 1.6 * 32 temporal filters, as in musicnn.
TIMBRAL_FILTERS = 204
TEMPORAL_FILTERS = 51
TIMBRAL_KERNELS = {"timbral74": int(0.4 * N_MELS), "timbral77": int(0.7 * N_MELS)}
TEMPORAL_KERNELS = {"temporal128": 128, "temporal64": 64, "temporal32": 32}
#: Time taps of the timbral kernels (the ``banded`` layout reads them as channels).
TIMBRAL_TAPS = 7
#: The three temporal convolutions' channels, side by side.
TEMPORAL_CHANNELS = TEMPORAL_FILTERS * len(TEMPORAL_KERNELS)
MIDEND_FILTERS = 64
BACKEND_UNITS = 200
#: Pooled features per network and window: (561 front-end + 3 * 64 mid-end channels) * (max, mean).
FEATURES = 2 * (TIMBRAL_FILTERS * len(TIMBRAL_KERNELS) + TEMPORAL_FILTERS * len(TEMPORAL_KERNELS)
                + 3 * MIDEND_FILTERS)
BN_EPSILON = 1e-3  # tf.compat.v1.layers.batch_normalization's default
#: Channels before the mid end: the timbral and temporal front ends' (561).
FRONTEND_CHANNELS = TIMBRAL_FILTERS * len(TIMBRAL_KERNELS) + TEMPORAL_CHANNELS


def midend_features(dims: int) -> list[int] | None:
    """Where the mid end's pooled features (max and mean of its 192 channels) lie in a bag of
    ``dims`` features (:data:`FEATURES` per network, side by side, max and mean interleaved
    per channel); None when ``dims`` is not whole networks.

    Deeper than the front end's, they hear rhythm and texture more than timbre: a linear SVM on
    them alone kept 0.88-0.89 of new songs played with other instruments where one on every
    feature kept 0.84-0.86 (bench/bench_train.py's "Under shift", issue 25)."""
    if dims <= 0 or dims % FEATURES:
        return None
    first, last = 2 * FRONTEND_CHANNELS, 2 * (FRONTEND_CHANNELS + 3 * MIDEND_FILTERS)
    return [n * FEATURES + i for n in range(dims // FEATURES) for i in range(first, last)]

#: Every weight-bearing layer of one network, in the order musicnn's graph creates them: the
#: names in the weight files (``weights.set_network_weights`` maps them onto the layers).
CONV_LAYERS = [*TIMBRAL_KERNELS, *TEMPORAL_KERNELS, "mid1", "mid2", "mid3"]
BN_LAYERS = ["input_bn", *(f"{n}_bn" for n in CONV_LAYERS), "pool_bn", "dense_bn"]
DENSE_LAYERS = ["dense", "logits"]


#: How the front end's convolutions are laid out: ``direct`` as musicnn wrote them (one input
#: channel each; the fastest on a CPU: Keras on JAX ran the banded form 3x slower there),
#: ``banded`` with the timbral kernels' 7 time taps as channels and the three temporal
#: convolutions as one banded matrix product (a GPU pads a single input channel to 8 or more).
#: On an H200 (``bench/gpu_check.py``): 4,743 windows/s against 3,192 at batch 256, and at
#: batch 1024 XLA planned 11 GiB for it against 111 GiB. The same sums of the same weights:
#: :func:`timbral_kernel`, :func:`temporal_kernel`.
Layout = Literal["direct", "banded"]


def build_window_network(prefix: str, num_tags: int, inputs: keras.KerasTensor,
                         layout: Layout = "direct") -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Wire one musicnn network onto ``inputs`` (windows, 187, 96); return its sigmoid scores and
    its pooled features (the 753 mid-end channels' max and mean over the window, interleaved as
    musicnn does: :data:`FEATURES` values, the input of its dense layer).

    Those features, not the 200-d dense layer, are what a trained head learns from: measured on
    new songs, they carry more of what separates genres (see ``bench/bench_train.py``).

    Layer names are ``{prefix}_{part}`` so that two networks can share one input (the default
    model runs the MSD and the MTT network on the same windows).
    """
    from keras import layers

    def name(part: str) -> str:
        return f"{prefix}_{part}"

    def bn(part: str) -> layers.BatchNormalization:
        return layers.BatchNormalization(epsilon=BN_EPSILON, name=name(part))

    x = layers.Reshape((N_FRAMES, N_MELS, 1), name=name("expand"))(inputs)
    x = bn("input_bn")(x)

    # Timbral front end: tall-in-frequency kernels, 'valid' in frequency, 'same' in time (musicnn
    # pads time by hand), then a max over the whole frequency axis.
    padded = layers.ZeroPadding2D(((3, 3), (0, 0)), name=name("timbral_pad"))(x)
    if layout == "banded":  # the 7 time taps as channels; kernels (1, height) over them
        padded = layers.Concatenate(axis=-1, name=name("timbral_taps"))([
            layers.Cropping2D(((k, TIMBRAL_TAPS - 1 - k), (0, 0)), name=name(f"timbral_tap{k}"))(
                padded) for k in range(TIMBRAL_TAPS)])
    front = []
    for part, height in TIMBRAL_KERNELS.items():
        taps = 1 if layout == "banded" else TIMBRAL_TAPS
        y = layers.Conv2D(TIMBRAL_FILTERS, (taps, height), activation="relu", name=name(part))(padded)
        y = bn(f"{part}_bn")(y)
        y = layers.MaxPooling2D((1, N_MELS - height + 1), name=name(f"{part}_pool"))(y)
        front.append(layers.Reshape((N_FRAMES, TIMBRAL_FILTERS), name=name(f"{part}_squeeze"))(y))

    # Temporal front end: long-in-time kernels with TF 'same' padding (asymmetric for even
    # sizes), each mel band alone, then a max over the bands.
    if layout == "banded":  # one product over time per band: channel c of frame t is t * 153 + c
        y = layers.Reshape((N_FRAMES, N_MELS), name=name("temporal_in"))(x)
        y = layers.Permute((2, 1), name=name("temporal_bands"))(y)
        y = layers.Dense(N_FRAMES * TEMPORAL_CHANNELS, activation="relu", name=name("temporal"))(y)
        y = layers.Reshape((N_MELS, N_FRAMES, TEMPORAL_CHANNELS), name=name("temporal_map"))(y)
        y = bn("temporal_bn")(y)
        y = layers.MaxPooling2D((N_MELS, 1), name=name("temporal_pool"))(y)
        front.append(layers.Reshape((N_FRAMES, TEMPORAL_CHANNELS), name=name("temporal_squeeze"))(y))
    else:
        for part, length in TEMPORAL_KERNELS.items():
            y = layers.Conv2D(TEMPORAL_FILTERS, (length, 1), padding="same", activation="relu",
                              name=name(part))(x)
            y = bn(f"{part}_bn")(y)
            y = layers.MaxPooling2D((1, N_MELS), name=name(f"{part}_pool"))(y)
            front.append(layers.Reshape((N_FRAMES, TEMPORAL_FILTERS), name=name(f"{part}_squeeze"))(y))
    frontend = layers.Concatenate(axis=-1, name=name("frontend"))(front)

    # Mid end: musicnn's [7, channels] 2-D convolutions over a (time, channels, 1) map are exactly
    # 1-D convolutions over time with `channels` inputs, which is what we run.
    def mid(part: str, inp: keras.KerasTensor) -> keras.KerasTensor:
        y = layers.ZeroPadding1D(3, name=name(f"{part}_pad"))(inp)
        y = layers.Conv1D(MIDEND_FILTERS, 7, activation="relu", name=name(part))(y)
        return bn(f"{part}_bn")(y)

    m1 = mid("mid1", frontend)
    m2 = layers.Add(name=name("res2"))([mid("mid2", m1), m1])
    m3 = layers.Add(name=name("res3"))([mid("mid3", m2), m2])
    midend = layers.Concatenate(axis=-1, name=name("midend"))([frontend, m1, m2, m3])

    # Back end: max and mean over time, interleaved per channel as musicnn's concat+flatten does.
    mx = layers.GlobalMaxPooling1D(name=name("max_pool"))(midend)
    mean = layers.GlobalAveragePooling1D(name=name("mean_pool"))(midend)
    channels = midend.shape[-1]
    stacked = layers.Concatenate(axis=-1, name=name("pool_stack"))([
        layers.Reshape((channels, 1), name=name("max_col"))(mx),
        layers.Reshape((channels, 1), name=name("mean_col"))(mean),
    ])
    pooled = layers.Flatten(name=name("pool_flat"))(stacked)
    y = bn("pool_bn")(pooled)
    y = layers.Dense(BACKEND_UNITS, activation="relu", name=name("dense"))(y)
    y = bn("dense_bn")(y)
    y = layers.Dense(num_tags, name=name("logits"))(y)
    return layers.Activation("sigmoid", name=name("sigmoid"))(y), pooled


def timbral_kernel(kernel: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """musicnn's (7, height, 1, filters) timbral kernel as the (1, height, 7, filters) kernel
    that reads the 7 time taps as channels."""
    return np.ascontiguousarray(kernel.transpose(2, 1, 0, 3))


def temporal_kernel(kernels: dict[str, npt.NDArray[np.float32]],
                    biases: dict[str, npt.NDArray[np.float32]]
                    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The three temporal convolutions ((length, 1, 1, 51) kernels, TF 'same' padding) as one
    (frames, frames * 153) matrix and its bias: output ``t * 153 + c`` of a mel band is channel
    ``c`` at frame ``t``, and the padding's zeros are the band's missing entries."""
    matrix = np.zeros((N_FRAMES, N_FRAMES, TEMPORAL_CHANNELS), np.float32)  # [source, frame, c]
    frames = np.arange(N_FRAMES)
    for i, (part, length) in enumerate(TEMPORAL_KERNELS.items()):
        before = (length - 1) // 2  # TF 'same': the odd one out of the padding goes after
        channels = slice(i * TEMPORAL_FILTERS, (i + 1) * TEMPORAL_FILTERS)
        for tap in range(length):
            source = frames + tap - before
            inside = (source >= 0) & (source < N_FRAMES)
            matrix[source[inside], frames[inside], channels] = kernels[part][tap, 0, 0]
    bias = np.concatenate([biases[part] for part in TEMPORAL_KERNELS])
    return matrix.reshape(N_FRAMES, -1), np.tile(bias, N_FRAMES).astype(np.float32)
