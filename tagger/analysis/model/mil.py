"""Multiple-instance learning: a song's scores are the mean of its windows' scores.

The classic Keras form, ``TimeDistributed(window_cnn)`` + ``GlobalAveragePooling1D``, gives wrong
song scores once traced with a changing window count (it drifts towards the first window's
output; see the field notes' "Known traps"). :class:`WindowMean` instead folds the window axis
into the batch, runs the window CNN once, and takes a masked mean per track, which is exact in
eager and traced modes alike. The engine uses the same arithmetic in :func:`mean_by_track` on
flat, fixed-size batches that pack the windows of many tracks together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tagger.analysis.features import N_FRAMES, N_MELS

if TYPE_CHECKING:
    import keras


def mean_by_track(scores: npt.NDArray[np.float32], counts: list[int]) -> npt.NDArray[np.float32]:
    """Split flat per-window ``scores`` back per track (``counts`` windows each) and average."""
    if sum(counts) != len(scores):
        raise ValueError(f"{len(scores)} window scores for {sum(counts)} windows")
    if any(c <= 0 for c in counts):
        raise ValueError("every track needs at least one window")
    starts = np.cumsum([0, *counts[:-1]])
    sums = np.add.reduceat(scores.astype(np.float64), starts, axis=0)
    return (sums / np.asarray(counts, dtype=np.float64)[:, None]).astype(np.float32)


def _window_mean_class() -> type:
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="genre_tagger")
    class WindowMean(keras.layers.Layer):
        """(tracks, windows, 187, 96) + (tracks, windows) mask -> (tracks, tags) mean scores."""

        def __init__(self, window_model: keras.Model, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.window_model = window_model

        def call(self, windows: Any, window_mask: Any) -> Any:
            shape = ops.shape(windows)
            flat = ops.reshape(windows, (-1, N_FRAMES, N_MELS))
            scores = self.window_model(flat, training=False)
            scores = ops.reshape(scores, (shape[0], shape[1], -1))
            weights = ops.expand_dims(ops.cast(window_mask, scores.dtype), -1)
            total = ops.sum(scores * weights, axis=1)
            return total / ops.maximum(ops.sum(weights, axis=1), 1.0)

        def compute_output_shape(self, windows_shape: Any, window_mask_shape: Any) -> Any:
            return (windows_shape[0], self.window_model.output_shape[-1])

    return WindowMean


def build_song_model(window_model: keras.Model) -> keras.Model:
    """The MIL song model around a window model: inputs ``windows`` and ``window_mask``.

    Tracks with fewer windows than the batch's longest are zero-padded and masked out, so any
    number of tracks of any lengths fit one call.
    """
    import keras

    windows = keras.Input((None, N_FRAMES, N_MELS), name="windows")
    mask = keras.Input((None,), name="window_mask")
    scores = _window_mean_class()(window_model, name="window_mean")(windows, mask)
    return keras.Model({"windows": windows, "window_mask": mask}, scores,
                       name=f"{window_model.name}_song")
