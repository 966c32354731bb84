"""Embedding: any :class:`Embedder` over records with test-time augmentation, to a file.

An ``Embedder`` maps a float32 batch of preprocessed images [B, H, W, 3] to
embeddings [B, D]. The Keras model, the TFLite interpreter and the ONNX
Runtime session (``export/kreid_edge``) all implement it, so the same code
scores float and quantized models side by side.

Embedding files (``.npz``) hold ``embeddings`` plus ``pid``, ``camid``,
``trackid`` and ``path`` arrays and a JSON ``meta`` string; they are written
atomically so that embedding and evaluation can run on different machines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Protocol, Sequence

import numpy as np

from kreid.data.records import Record


class Embedder(Protocol):
    """Images in, embeddings out."""

    input_size: tuple[int, int]      # (H, W)
    preprocessing: str               # see kreid.data.augment.preprocess

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass
class KerasEmbedder:
    """An embedding-only Keras model as an :class:`Embedder`."""

    model: object
    preprocessing: str = "scale"

    @property
    def input_size(self) -> tuple[int, int]:
        shape = self.model.input_shape
        return int(shape[1]), int(shape[2])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(images, training=False))


def read_sidecar(model_path: str) -> dict:
    """The JSON written next to an exported or trained model: input size and preprocessing."""
    base = os.path.splitext(model_path)[0]
    for candidate in (model_path + ".json", base + ".json"):
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f)
    return {}


def load_embedder(path: str, num_threads: int | None = None) -> "Embedder":
    """A ``.keras`` model, a ``.tflite`` or an ``.onnx`` file as an :class:`Embedder`."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if path.endswith(".keras"):
        import keras

        import kreid.models.heads  # noqa: F401  (register custom layers)
        model = keras.models.load_model(path, safe_mode=True, compile=False)
        return KerasEmbedder(model, read_sidecar(path).get("preprocessing", "scale"))
    if path.endswith((".tflite", ".onnx")):
        from kreid_edge import load_embedder as edge_load

        return edge_load(path, num_threads=num_threads)
    raise ValueError(f"{path}: unknown model format (expected .keras, .tflite or .onnx)")


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

    def save(self, path: str) -> str:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp.npz"
        np.savez(tmp, embeddings=self.embeddings, pid=self.pid, camid=self.camid,
                 trackid=self.trackid, path=self.path.astype(str), meta=json.dumps(self.meta))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str) -> "EmbeddingSet":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"embedding file not found: {path}")
        with np.load(path, allow_pickle=False) as data:
            missing = {"embeddings", "pid", "camid"} - set(data.files)
            if missing:
                raise ValueError(f"{path}: not a kreid embedding file (missing {sorted(missing)})")
            n = len(data["embeddings"])
            return cls(data["embeddings"], data["pid"], data["camid"],
                       data["trackid"] if "trackid" in data.files else np.full(n, -1),
                       data["path"] if "path" in data.files else np.array([""] * n),
                       json.loads(str(data["meta"])) if "meta" in data.files else {})


def _progress(done: int, total: int, start: float, label: str) -> None:
    rate = done / max(time.perf_counter() - start, 1e-9)
    eta = (total - done) / max(rate, 1e-9)
    sys.stderr.write(f"\r{label}: {done}/{total} images, {rate:.0f} img/s, ETA {eta:.0f} s ")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def embed_records(embedder: Embedder, records: Sequence[Record], tta: str = "none",
                  batch_size: int = 64, normalize: bool = False, progress: bool = True,
                  label: str = "embed") -> EmbeddingSet:
    """Embed every record; TTA views are averaged (optionally L2-normalised first)."""
    from kreid.data import pipeline

    dataset = pipeline.eval_dataset(records, embedder.input_size, tta=tta,
                                    preprocessing=embedder.preprocessing, batch_size=batch_size)
    chunks, done, start = [], 0, time.perf_counter()
    for views in pipeline.iterate(dataset, records):
        views = np.asarray(views)
        b, v = views.shape[:2]
        emb = np.asarray(embedder(views.reshape(b * v, *views.shape[2:]).astype(np.float32)))
        emb = emb.reshape(b, v, -1)
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
                        {"tta": tta, "normalize": normalize})
