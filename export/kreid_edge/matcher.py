"""Gallery matching on the device: enroll crops of known identities, match query crops."""

from __future__ import annotations

import numpy as np


class GalleryMatcher:
    """Keeps gallery embeddings and returns the nearest identities of a query.

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

    def enroll(self, images, ids) -> None:
        ids = [str(i) for i in ids]
        if len(images) != len(ids):
            raise ValueError(f"{len(images)} images but {len(ids)} ids")
        emb = self.embedder.embed_images(images)
        self.embeddings = emb if not len(self.ids) else np.concatenate([self.embeddings, emb])
        self.ids += ids

    def _distances(self, q: np.ndarray) -> np.ndarray:
        g = self.embeddings
        if self.metric == "cosine":
            qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
            return 1.0 - qn @ gn.T
        d = (q * q).sum(1)[:, None] - 2 * q @ g.T + (g * g).sum(1)[None]
        return np.sqrt(np.maximum(d, 0))

    def match(self, images, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Per query: the ``top_k`` nearest *identities* (best image per identity)."""
        if not self.ids:
            raise ValueError("the gallery is empty: enroll images first")
        dist = self._distances(self.embedder.embed_images(images))
        ids = np.array(self.ids)
        out = []
        for row in dist:
            best: dict[str, float] = {}
            for j in np.argsort(row):
                best.setdefault(ids[j], float(row[j]))
                if len(best) == top_k:
                    break
            out.append(list(best.items()))
        return out

    def save(self, path: str) -> None:
        np.savez(path, embeddings=self.embeddings, ids=np.array(self.ids))

    def load(self, path: str) -> None:
        with np.load(path) as data:
            self.embeddings, self.ids = data["embeddings"], [str(i) for i in data["ids"]]
