"""A model trained by ``genre-tagger train``: a small MIL head on the shipped network's features.

The file is a NumPy ``.npz`` of plain arrays and one JSON document (``meta``), read with
``allow_pickle=False``: loading it runs no code. The head's forward pass is written here in NumPy
(a few matrix products), so predicting from stored features needs neither Keras nor a decode;
``tagger.training.head`` builds the same arithmetic in Keras to train it, and a test holds the two
to each other. Its version is a hash of the file's bytes: the cache records which model made
each prediction, and a retrained model re-decides every file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from tagger.analysis.model.catalog import MODELS, model_version
from tagger.analysis.taxonomy import Selection
from tagger.errors import ModelFileError

Float32Array = npt.NDArray[np.float32]
#: How a head pools a song's instances: ``svm`` is the linear SVM on the mean of the mid-end
#: features (:mod:`tagger.training.margin`), the others are Keras heads
#: (:mod:`tagger.training.head`).
Pooling = Literal["svm", "linear", "mean", "attention", "autopool"]
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)
#: Measured in bench/bench_train.py (the README's "Under shift"): 0.88-0.89 of new songs played
#: with other instruments and recorded otherwise, where the Keras heads kept 0.64-0.79 (issue 25).
DEFAULT_POOLING: Pooling = "svm"
FORMAT = "genre-tagger-head"
FORMAT_VERSION = 1
#: Weights each pooling needs (``name: shape rank``), checked when a file is read.
WEIGHTS: dict[Pooling, tuple[str, ...]] = {
    "svm": ("out/kernel", "out/bias"),
    "linear": ("out/kernel", "out/bias"),
    "mean": ("hidden/kernel", "hidden/bias", "out/kernel", "out/bias"),
    "attention": ("hidden/kernel", "hidden/bias", "attention/v", "attention/w", "out/kernel",
                  "out/bias"),
    "autopool": ("hidden/kernel", "hidden/bias", "out/kernel", "out/bias", "autopool/alpha"),
}


def is_trained(model: str) -> bool:
    """A model setting names a trained model file unless it is a shipped model's name."""
    return model not in MODELS


@dataclass(frozen=True)
class TrainedModel:
    path: str
    version: str  # name@sha256-prefix of the file
    meta: dict[str, Any]
    arrays: dict[str, Float32Array] = field(repr=False)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def base(self) -> str:
        return str(self.meta["base"])

    @property
    def multi_label(self) -> bool:
        return bool(self.meta["multi_label"])

    @property
    def pooling(self) -> Pooling:
        return self.meta["pooling"]  # type: ignore[no-any-return]

    @property
    def thresholds(self) -> Float32Array:
        return np.asarray(self.meta["thresholds"], dtype=np.float32)

    def predict(self, instances: Float32Array) -> Float32Array:
        """One track's class probabilities from its (instances, features) bag."""
        mask = np.ones((1, len(instances)), np.float32)
        probs: Float32Array = forward(self.pooling, self.arrays, instances[None], mask,
                                      self.multi_label)[0]
        return probs

    def choose(self, scores: Mapping[str, float], sel: Selection) -> list[tuple[str, float]]:
        """The classes to write, most confident first; empty (abstain) below the thresholds.

        Each class has its own threshold, chosen on validation songs when the model was
        trained. One label per song (softmax) gives at most the best class; several labels
        (sigmoid) give every class over its threshold, at most ``top_k``.
        """
        thr = dict(zip(self.classes, self.thresholds.tolist()))
        ranked = sorted(((c, float(scores.get(c, 0.0))) for c in self.classes),
                        key=lambda kv: (-kv[1], kv[0]))
        if not self.multi_label:
            best, p = ranked[0]
            return [(best, p)] if p >= thr[best] else []
        return [(c, p) for c, p in ranked if p >= thr[c]][:max(sel.top_k, 1)]


def softmax(x: npt.NDArray[Any], axis: int) -> npt.NDArray[Any]:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    out: npt.NDArray[Any] = e / e.sum(axis=axis, keepdims=True)
    return out


def sigmoid(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    out: npt.NDArray[Any] = 1.0 / (1.0 + np.exp(-x))
    return out


def forward(pooling: Pooling, w: Mapping[str, Float32Array], x: Float32Array, mask: Float32Array,
            multi_label: bool) -> Float32Array:
    """(tracks, instances, features) bags + (tracks, instances) mask -> (tracks, classes).

    The same arithmetic as the Keras head in :mod:`tagger.training.head` (standardised
    features, then the pooling's layers), in float64 for a stable reference.
    """
    xs: npt.NDArray[Any] = (x.astype(np.float64) - w["scale/mean"]) / w["scale/std"]
    m = mask.astype(np.float64)[..., None]

    def act(z: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return sigmoid(z) if multi_label else softmax(z, -1)

    if pooling in ("linear", "svm"):  # the mean, one dense layer (an SVM's margins, scaled)
        z = (xs * m).sum(1) / np.maximum(m.sum(1), 1.0)
        out = act(z @ w["out/kernel"] + w["out/bias"])
    else:
        h = np.maximum(xs @ w["hidden/kernel"] + w["hidden/bias"], 0.0)
        if pooling == "attention":
            score = (np.tanh(h @ w["attention/v"]) @ w["attention/w"])[..., 0]
            a = softmax(np.where(mask > 0, score, -1e9), 1)[..., None]
            out = act((a * h).sum(1) @ w["out/kernel"] + w["out/bias"])
        else:
            p = act(h @ w["out/kernel"] + w["out/bias"])  # per-instance probabilities
            if pooling == "mean":
                out = (p * m).sum(1) / np.maximum(m.sum(1), 1.0)
            else:  # autopool: per class, softmax(alpha * p) over instances weights their p
                weights = softmax(np.where(m > 0, w["autopool/alpha"] * p, -1e9), 1)
                out = (weights * p).sum(1)
                if not multi_label:
                    out = out / out.sum(-1, keepdims=True)
    result: Float32Array = out.astype(np.float32)
    return result


def save(path: str | Path, meta: dict[str, Any], arrays: Mapping[str, Float32Array]) -> str:
    """Write a model file atomically; returns its version."""
    meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION}
    buf = io.BytesIO()
    contents: dict[str, Any] = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
    contents["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    np.savez(buf, **contents)
    data = buf.getvalue()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return _version(path, data)


def _version(path: Path, data: bytes) -> str:
    stem = path.name.removesuffix(".npz")
    return f"{stem}@{hashlib.sha256(data).hexdigest()[:12]}"


def load(path: str | Path) -> TrainedModel:
    """Read a model file; :class:`ModelFileError` says plainly what is wrong with it."""
    path = Path(path).expanduser().absolute()
    try:
        st = path.stat()
    except OSError as e:
        raise ModelFileError(f"model {path}: {e.strerror or e}") from None
    return _load(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=8)
def _load(path: str, _size: int, _mtime_ns: int) -> TrainedModel:
    """Cached by stat: a daemon asks for the version of every batch; a new file is re-read."""
    where = f"model {path}"
    try:
        data = Path(path).read_bytes()
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except OSError as e:
        raise ModelFileError(f"{where}: {e.strerror or e}") from None
    except Exception as e:  # zipfile, numpy: whatever a damaged or foreign file raises
        raise ModelFileError(f"{where}: not a genre-tagger model file ({type(e).__name__})") from None
    try:
        meta = json.loads(bytes(arrays.pop("meta")).decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{where}: not a genre-tagger model file (no readable meta)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{where}: not a genre-tagger model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{where}: format version {meta.get('format_version')} is not "
                             f"{FORMAT_VERSION}; retrain it with this genre-tagger")
    pooling = meta.get("pooling")
    if pooling not in POOLINGS or meta.get("base") not in MODELS:
        raise ModelFileError(f"{where}: unknown pooling or base model")
    missing = [k for k in (*WEIGHTS[pooling], "scale/mean", "scale/std") if k not in arrays]
    classes = meta.get("classes")
    if missing or not classes or len(meta.get("thresholds", ())) != len(classes):
        raise ModelFileError(f"{where}: incomplete ({', '.join(missing) or 'classes'})")
    if arrays["out/kernel"].shape[-1] != len(classes):
        raise ModelFileError(f"{where}: {arrays['out/kernel'].shape[-1]} outputs for "
                             f"{len(classes)} classes")
    if meta.get("base_version") != model_version(meta["base"]):
        raise ModelFileError(f"{where}: trained on {meta.get('base_version')}, but this "
                             f"genre-tagger ships {model_version(meta['base'])}; retrain it")
    return TrainedModel(path, _version(Path(path), data), meta,
                        {k: v.astype(np.float32) for k, v in arrays.items()})


def trained_scores(model: TrainedModel, bag: Float32Array) -> dict[str, float]:
    """Class -> probability for one track's bag, most confident first (dicts keep order, and
    ``predict --json`` lists them so)."""
    probs = model.predict(bag)
    ranked = sorted(zip(model.classes, probs.tolist()), key=lambda kv: (-kv[1], kv[0]))
    return {c: float(p) for c, p in ranked}
