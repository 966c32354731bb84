"""Gallery matching on the device: enroll crops of known identities, match query crops."""

from __future__ import annotations

import json
import os

import numpy as np

from kreid_edge.distances import distance_matrix
from kreid_edge.files import atomic_write


class GalleryError(ValueError):
    """A gallery file is unreadable, or was enrolled with another model."""


class GalleryMatcher:
    """Keeps gallery embeddings and returns the nearest identities of a query.

    The gallery remembers the fingerprint of the model that enrolled it; a
    gallery enrolled with another model is refused (its embeddings live in
    another space, and distances to them are meaningless).

    Example::

        matcher = GalleryMatcher(TFLiteEmbedder("model.int8.tflite", num_threads=2))
        matcher.enroll(["alice_1.jpg", "alice_2.jpg", "bob.jpg"], ["alice", "alice", "bob"])
        matcher.match(["crop.jpg"], top_k=2)   # [[("alice", 0.41), ("bob", 1.32)]]
    """

    def __init__(self, embedder, metric: str = "euclidean"):
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
        self.embedder, self.metric = embedder, metric
        self.embeddings = np.zeros((0, 0), np.float32)
        self.ids: list[str] = []

    @property
    def fingerprint(self) -> str:
        return str(getattr(self.embedder, "fingerprint", ""))

    def enroll(self, images, ids) -> None:
        ids = [str(i) for i in ids]
        if len(images) != len(ids):
            raise ValueError(f"{len(images)} images but {len(ids)} ids")
        if not len(images):
            return
        emb = self.embedder.embed_images(images)
        self.embeddings = emb if not len(self.ids) else np.concatenate([self.embeddings, emb])
        self.ids += ids

    def match(self, images, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Per query: the ``top_k`` nearest *identities* (best image per identity)."""
        if not self.ids:
            raise ValueError("the gallery is empty: enroll images first")
        if not len(images):
            return []
        dist = distance_matrix(self.embedder.embed_images(images), self.embeddings, self.metric,
                               dtype=np.float64)      # exact near 0: small galleries
        ids = np.array(self.ids)
        out = []
        for row in dist:
            best: dict[str, float] = {}
            for j in np.argsort(row, kind="stable"):
                best.setdefault(ids[j], float(row[j]))
                if len(best) == top_k:
                    break
            out.append(list(best.items()))
        return out

    def save(self, path: str) -> str:
        """Write the gallery to ``path`` (``.npz`` is appended when missing); returns the path."""
        if not path.endswith(".npz"):
            path += ".npz"
        meta = {"fingerprint": self.fingerprint, "model": getattr(self.embedder, "path", ""),
                "metric": self.metric}
        with atomic_write(path) as f:
            np.savez(f, embeddings=self.embeddings, ids=np.array(self.ids, dtype=str),
                     meta=np.array(json.dumps(meta)))
        return path

    def load(self, path: str) -> None:
        if not os.path.isfile(path):
            raise GalleryError(f"{path}: gallery file not found (make one with kreid-edge enroll)")
        try:
            with np.load(path, allow_pickle=False) as data:
                embeddings, ids = data["embeddings"], [str(i) for i in data["ids"]]
                meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
        except (OSError, ValueError, KeyError) as exc:
            raise GalleryError(f"{path}: not a kreid-edge gallery file ({exc})") from exc
        saved, mine = meta.get("fingerprint", ""), self.fingerprint
        if saved and mine and saved != mine:
            raise GalleryError(
                f"{path} was enrolled with model {meta.get('model') or '?'} (fingerprint {saved}) "
                f"but this matcher runs {getattr(self.embedder, 'path', '?')} (fingerprint "
                f"{mine}): embeddings of different models cannot be compared; enroll the "
                "gallery again with this model")
        self.embeddings, self.ids = embeddings, ids
