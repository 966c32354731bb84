"""Embedding: any :class:`Embedder` over records with test-time augmentation, to a file.

An ``Embedder`` maps a float32 batch of preprocessed images [B, H, W, 3] to
embeddings [B, D] and carries the ``fingerprint`` of the model it runs. The
Keras model, the TFLite interpreter and the ONNX Runtime session
(``export/kreid_edge``) all implement it, so the same code scores float and
quantized models side by side.

Memory is bounded by a fixed image budget per model call (``batch_size``
images, TTA views included), whatever the TTA, the model and the dataset
size; Keras models run as one compiled function (traced once per input size).

Embedding files (``.npz``) hold ``embeddings`` plus ``pid``, ``camid``,
``trackid`` and ``path`` arrays and a JSON ``meta`` string (TTA, the model
and its fingerprint); they are written atomically so that embedding and
evaluation can run on different machines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import zipfile
from typing import Protocol, Sequence

import numpy as np

from kreid.data.records import Record
from kreid.errors import EmptySplitError, ModelMismatchError
from kreid.progress import progress_line
from kreid_edge.files import atomic_write
from kreid_edge.sidecar import SidecarError, read_sidecar

IMAGES_PER_CALL = 64    # default image budget per model call (views included)


class Embedder(Protocol):
    """Images in, embeddings out."""

    input_size: tuple[int, int]      # (H, W)
    preprocessing: str               # see kreid_edge.preprocessing
    fingerprint: str                 # identifies the weights: embeddings of equal ones compare

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def weights_fingerprint(model) -> str:
    """SHA-256 (16 hex digits) of every weight of a Keras model, in order."""
    digest = hashlib.sha256()
    for w in model.weights:
        value = np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w))
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


class KerasEmbedder:
    """An embedding-only Keras model as an :class:`Embedder`, run as one compiled
    function (traced once; any batch size)."""

    def __init__(self, model, preprocessing: str = "scale", path: str = ""):
        import tensorflow as tf

        self.model, self.preprocessing, self.path = model, preprocessing, path
        spec = tf.TensorSpec([None, *self.input_size, 3], tf.float32)
        self._forward = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32),
                                    input_signature=[spec])

    @property
    def input_size(self) -> tuple[int, int]:
        shape = self.model.input_shape
        return int(shape[1]), int(shape[2])

    @property
    def fingerprint(self) -> str:
        """Of the weights as they are now (a model in training changes)."""
        return weights_fingerprint(self.model)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(np.asarray(images, np.float32)))


def load_embedder(path: str, num_threads: int | None = None,
                  preprocessing: str | None = None, supply: str = "") -> "Embedder":
    """A ``.keras`` model, a ``.tflite`` or an ``.onnx`` file as an :class:`Embedder`.

    The model's sidecar (``<path>.json``) gives its preprocessing; without one
    a ``.keras`` model needs ``preprocessing`` (``supply`` names the flag that
    passes it, for the error message).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if path.endswith(".keras"):
        from kreid.models import load_model

        if preprocessing is None:
            preprocessing = read_sidecar(path, supply or "pass preprocessing=").preprocessing
        model = load_model(path)
        return KerasEmbedder(model, preprocessing, path)
    if path.endswith((".tflite", ".onnx")):
        from kreid_edge import load_embedder as edge_load

        return edge_load(path, num_threads=num_threads)
    raise ValueError(f"{path}: unknown model format (expected .keras, .tflite or .onnx)")


def keras_sidecar(path: str, preprocessing: str | None = None, supply: str = ""):
    """The sidecar of a ``.keras`` file; ``preprocessing`` overrides (or stands in for) it."""
    from kreid_edge.sidecar import Sidecar

    if not os.path.exists(path):        # named as such, not as a missing sidecar
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        sidecar = read_sidecar(path, supply)
    except SidecarError:
        if preprocessing is None:
            raise
        from kreid.models import load_model

        model = load_model(path)
        return Sidecar(tuple(int(v) for v in model.input_shape[1:3]), preprocessing,
                       os.path.splitext(os.path.basename(path))[0])
    return sidecar if preprocessing is None else sidecar.replace(preprocessing=preprocessing)


@dataclasses.dataclass
class EmbeddingSet:
    embeddings: np.ndarray
    pid: np.ndarray
    camid: np.ndarray
    trackid: np.ndarray
    path: np.ndarray
    meta: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("fingerprint", ""))

    def save(self, path: str) -> str:
        with atomic_write(path) as f:
            np.savez(f, embeddings=self.embeddings, pid=self.pid, camid=self.camid,
                     trackid=self.trackid, path=self.path.astype(str),
                     meta=json.dumps(self.meta))
        return path

    @classmethod
    def load(cls, path: str) -> "EmbeddingSet":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"embedding file not found: {path}")
        if not zipfile.is_zipfile(path):       # numpy would talk of allow_pickle
            raise ValueError(f"{path}: not a kreid embedding file (not an .npz archive); make "
                             "one with bin/embed.py")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = {"embeddings", "pid", "camid"} - set(data.files)
                if missing:
                    raise ValueError(f"missing arrays {sorted(missing)}")
                n = len(data["embeddings"])
                return cls(data["embeddings"], data["pid"], data["camid"],
                           data["trackid"] if "trackid" in data.files else np.full(n, -1),
                           data["path"] if "path" in data.files else np.array([""] * n),
                           json.loads(str(data["meta"])) if "meta" in data.files else {})
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path}: not a kreid embedding file ({exc}); make one with "
                             "bin/embed.py") from exc


def check_same_model(query: EmbeddingSet, gallery: EmbeddingSet, what: str = "") -> None:
    """Refuse to compare embeddings made by models with different fingerprints."""
    q, g = query.fingerprint, gallery.fingerprint
    if q and g and q != g:
        raise ModelMismatchError(
            f"{what or 'query and gallery'} were embedded by different models: query by "
            f"{query.meta.get('model') or '?'} (fingerprint {q}), gallery by "
            f"{gallery.meta.get('model') or '?'} (fingerprint {g}); distances between "
            "them are meaningless. Embed both with the same model")


def _progress(done: int, total: int, start: float, label: str) -> None:
    sys.stderr.write("\r" + progress_line(label, done, total, start) + " ")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _embed_views(embedder: Embedder, views: np.ndarray, budget: int) -> np.ndarray:
    """[B, V, H, W, 3] -> [B, V, D], calling the model on at most ``budget`` images."""
    b, v = views.shape[:2]
    flat = views.reshape(b * v, *views.shape[2:]).astype(np.float32, copy=False)
    parts = [np.asarray(embedder(flat[s:s + budget])) for s in range(0, len(flat), budget)]
    return np.concatenate(parts).reshape(b, v, -1)


def embed_records(embedder: Embedder, records: Sequence[Record], tta: str = "none",
                  batch_size: int = IMAGES_PER_CALL, normalize: bool = False,
                  progress: bool = True, label: str = "embed") -> EmbeddingSet:
    """Embed every record; TTA views are averaged (optionally L2-normalised first).

    ``batch_size`` is the image budget per model call, views included: a
    five-crop + flip pass over any number of records holds at most that many
    images in the model at once.
    """
    from kreid.data import augment, pipeline

    if not len(records):
        raise EmptySplitError(f"{label}: no images to embed (the split is empty)")
    budget = max(1, int(batch_size))
    per_batch = max(1, budget // augment.num_views(tta))
    dataset = pipeline.eval_dataset(records, embedder.input_size, tta=tta,
                                    preprocessing=embedder.preprocessing, batch_size=per_batch)
    chunks, done, start = [], 0, time.perf_counter()
    for views in pipeline.iterate(dataset, records):
        views = np.asarray(views)
        b = views.shape[0]
        emb = _embed_views(embedder, views, budget)
        if normalize:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)
        chunks.append(emb.mean(axis=1))
        done += b
        if progress:
            _progress(done, len(records), start, label)
    embeddings = np.concatenate(chunks).astype(np.float32)
    if not np.isfinite(embeddings).all():
        bad = np.flatnonzero(~np.isfinite(embeddings).all(1))
        raise ValueError(f"{len(bad)} embeddings are NaN/inf, e.g. for {records[bad[0]].path}: "
                         "the model diverged or the input is broken")
    return EmbeddingSet(embeddings, np.array([r.pid for r in records]),
                        np.array([r.camid for r in records]),
                        np.array([r.trackid for r in records]),
                        np.array([r.path for r in records]),
                        {"tta": tta, "normalize": normalize,
                         "fingerprint": str(getattr(embedder, "fingerprint", "")),
                         "model": str(getattr(embedder, "path", ""))})
