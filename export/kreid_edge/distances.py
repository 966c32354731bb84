"""Query x gallery distances in NumPy, chunked so that large galleries fit in memory.

Shared by kreid.evaluation (which re-exports it) and the device's gallery matcher."""

from __future__ import annotations

from typing import Iterator

import numpy as np

METRICS = ("euclidean", "sqeuclidean", "cosine")


def _check(q: np.ndarray, g: np.ndarray, dtype=np.float32):
    q, g = np.asarray(q, dtype), np.asarray(g, dtype)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"query {q.shape} and gallery {g.shape} must be [N, D] with equal D")
    for name, x in (("query", q), ("gallery", g)):
        if not np.isfinite(x).all():
            raise ValueError(f"{name} embeddings contain NaN or inf")
    return q, g


def distance_chunk(q: np.ndarray, g: np.ndarray, metric: str, g_sq=None) -> np.ndarray:
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ gn.T
    if metric not in ("euclidean", "sqeuclidean"):
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    g_sq = (g * g).sum(1) if g_sq is None else g_sq
    d = (q * q).sum(1)[:, None] - 2.0 * (q @ g.T) + g_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return np.sqrt(d, out=d) if metric == "euclidean" else d


def center(q: np.ndarray, g: np.ndarray, metric: str):
    """Subtract the gallery mean from both sides for (sq)euclidean distances.

    Distances are unchanged mathematically, but |q|^2 + |g|^2 - 2 q.g loses
    precision in float32 when the norms are large next to the spread (an
    embedding with a big common offset); centring removes the offset.
    """
    if metric == "cosine":
        return q, g
    c = g.mean(0, dtype=np.float64).astype(g.dtype)
    return q - c, g - c


def iter_distance_chunks(q, g, metric: str = "euclidean",
                         gallery_chunk: int = 65536) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (gallery offset, distances [Q, chunk]) over gallery chunks."""
    q, g = center(*_check(q, g), metric)
    for start in range(0, len(g), gallery_chunk):
        yield start, distance_chunk(q, g[start:start + gallery_chunk], metric)


def distance_matrix(q, g, metric: str = "euclidean", chunk: int = 4096,
                    dtype=np.float32) -> np.ndarray:
    """Full [Q, G] matrix, computed in query chunks.

    ``dtype=np.float64`` for small galleries where exact near-zero distances
    matter (the device matcher: an enrolled image must lie at distance ~0 from
    itself; in float32 the rounding of |q|^2 + |g|^2 - 2 q.g, amplified by the
    square root, leaves ~1e-3).
    """
    q, g = center(*_check(q, g, dtype), metric)
    out = np.empty((len(q), len(g)), dtype)
    g_sq = (g * g).sum(1)
    for s in range(0, len(q), chunk):
        out[s:s + chunk] = distance_chunk(q[s:s + chunk], g, metric, g_sq)
    return out
