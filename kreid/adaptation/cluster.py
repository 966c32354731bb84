"""Pseudo-identities from unlabelled embeddings: k-reciprocal Jaccard distance -> DBSCAN.

The clustering of SpCL (Ge et al., NeurIPS 2020) and Cluster Contrast (Dai et
al., 2021), whose code computes the Jaccard distance of k-reciprocal encodings
(k1 = 30, k2 = 6) on L2-normalised features and runs DBSCAN on it
(``min_samples`` 4 there, outliers left out of training). Here:

* **Sparse, bounded memory.** :func:`kreid.evaluation.rerank.jaccard_graph`
  stores only the pairs whose expanded k-reciprocal sets overlap (the others
  are at distance 1, farther than any eps DBSCAN can use), at most each
  unit's 200 nearest, none farther than a fixed eps: never an N x N
  matrix (OpenUnReID runs out of 128 GB at 200,000 images, its issue #9).
  scikit-learn's DBSCAN reads the sparse matrix as the neighbourhood graph.
* **eps.** A number, or ``"auto"``: the rule of MMT (Ge et al., ICLR 2020,
  their code's ``rho = 1.6e-3``): the mean of the smallest rho-fraction of
  all N(N-1)/2 pairwise distances (pairs not stored count at 1). rho is the
  share of all pairs expected to be same-identity pairs (Market-1501: about
  0.2%; a two-camera set of P people with one image per camera: 1/N).
  SpCL and Cluster Contrast fix eps = 0.6 (Market, Duke) instead.
* **min_samples** 2 by default (a cluster of one person's two images is a
  cluster: the classic two-camera sets have two images per person and
  Cluster Contrast's 4 would leave them all outliers); configurable.
* **Tracks as constraints.** Crops of one track are one person (must-link):
  the clustered unit is the track (its mean normalised embedding), each
  untracked crop its own unit, and every crop takes its unit's label. Two
  tracks of the same camera whose frame ranges overlap are two people
  (cannot-link): their edge is removed from the graph before DBSCAN, and a
  cluster that still holds both (joined through others) is split by a greedy
  colouring (tracks by size, largest first, each into the first part holding
  none it conflicts with); a part left with one crop becomes an outlier.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from kreid.data.records import Record
from kreid.evaluation.rerank import jaccard_graph


@dataclasses.dataclass
class Clustering:
    """Pseudo-labels of N crops (-1: outlier, left out) and how they came."""

    labels: np.ndarray           # [N] cluster 0..C-1 per crop, -1 outlier
    eps: float
    num_units: int               # tracks + untracked crops
    cannot_link_pairs: int
    splits: int                  # clusters split because they joined conflicting tracks

    @property
    def num_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) and self.labels.max() >= 0 else 0

    @property
    def num_outliers(self) -> int:
        return int((self.labels < 0).sum())

    def centroids(self, embeddings: np.ndarray) -> np.ndarray:
        """[C, D] mean normalised embedding per cluster, normalised (the memory's start)."""
        q = normalize(embeddings)
        keep = self.labels >= 0
        sums = np.zeros((self.num_clusters, q.shape[1]), np.float64)
        np.add.at(sums, self.labels[keep], q[keep])
        return normalize(sums).astype(np.float32)


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def units(records: Sequence[Record]) -> np.ndarray:
    """[N] unit index per crop: one unit per track id, one per untracked crop."""
    tracks = np.array([r.trackid for r in records], np.int64)
    key = np.where(tracks >= 0, tracks, -1 - np.arange(len(records)))
    _, unit = np.unique(key, return_inverse=True)
    return unit.astype(np.int64)


def cannot_link(records: Sequence[Record], unit: np.ndarray) -> np.ndarray:
    """[M, 2] unit pairs that are two people: tracks of one camera overlapping in frames."""
    cams = np.array([r.camid for r in records], np.int64)
    tracks = np.array([r.trackid for r in records], np.int64)
    frames = np.array([r.frame for r in records], np.int64)
    ok = (tracks >= 0) & (frames >= 0) & (cams >= 0)
    if not ok.any():
        return np.zeros((0, 2), np.int64)
    u = unit[ok]
    order = np.unique(u)
    first = np.full(unit.max() + 1, np.iinfo(np.int64).max)
    last = np.full(unit.max() + 1, -1)
    cam = np.full(unit.max() + 1, -1)
    np.minimum.at(first, u, frames[ok])
    np.maximum.at(last, u, frames[ok])
    cam[u] = cams[ok]
    pairs = []
    for c in np.unique(cam[order]):                     # a sweep per camera
        members = order[cam[order] == c]
        members = members[np.argsort(first[members], kind="stable")]
        active: list[int] = []
        for m in members:
            active = [a for a in active if last[a] >= first[m]]
            pairs.extend((a, m) for a in active)
            active.append(m)
    return np.array(pairs, np.int64).reshape(-1, 2)


def eps_from_rho(graph: sp.csr_matrix, rho: float) -> float:
    """MMT's rule: the mean of the smallest ``rho`` share of the N(N-1)/2 pair distances."""
    n = graph.shape[0]
    upper = sp.triu(graph, k=1).tocoo()
    count = max(1, int(round(rho * n * (n - 1) / 2)))
    values = upper.data.astype(np.float64)
    if len(values) >= count:
        smallest = np.partition(values, count - 1)[:count]
        return float(smallest.mean())
    return float((values.sum() + (count - len(values)) * 1.0) / count)


def _split_conflicts(labels: np.ndarray, pairs: np.ndarray, size: np.ndarray) -> tuple:
    """Split every cluster holding a cannot-link pair (greedy colouring); -> labels, splits."""
    labels = labels.copy()
    if not len(pairs):
        return labels, 0
    same = (labels[pairs[:, 0]] >= 0) & (labels[pairs[:, 0]] == labels[pairs[:, 1]])
    conflicted = np.unique(labels[pairs[same, 0]])
    next_label, splits = labels.max() + 1, 0
    for c in conflicted:
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(-size[members], kind="stable")]
        inside = set(members.tolist())
        enemies: dict[int, set] = {}
        for a, b in pairs:
            if a in inside and b in inside:
                enemies.setdefault(a, set()).add(b)
                enemies.setdefault(b, set()).add(a)
        parts: list[list[int]] = []
        for m in members:
            for part in parts:
                if not enemies.get(m, set()).intersection(part):
                    part.append(m)
                    break
            else:
                parts.append([m])
        for part in parts[1:]:
            labels[part] = next_label
            next_label += 1
        splits += 1
    return labels, splits


def _contiguous(labels: np.ndarray) -> np.ndarray:
    out = np.full_like(labels, -1)
    kept = labels >= 0
    _, out[kept] = np.unique(labels[kept], return_inverse=True)
    return out


def cluster(embeddings: np.ndarray, records: Sequence[Record] | None = None,
            eps: float | str = "auto", rho: float = 1.6e-3, min_samples: int = 2,
            k1: int = 30, k2: int = 6, chunk: int = 1024,
            max_neighbors: int = 200) -> Clustering:
    """Pseudo-labels for ``embeddings`` [N, D] (``records`` give tracks, cameras, frames).

    ``max_neighbors``: the Jaccard graph keeps each unit's nearest 200 (a cluster
    of more units still forms, through its members' own lists); with a fixed
    ``eps`` it also drops every pair farther than eps."""
    from sklearn.cluster import DBSCAN

    embeddings = np.asarray(embeddings, np.float32)
    n = len(embeddings)
    if embeddings.ndim != 2 or not np.isfinite(embeddings).all():
        raise ValueError(f"embeddings: expected finite [N, D] values, got shape "
                         f"{embeddings.shape}")
    if records is not None and len(records) != n:
        raise ValueError(f"{len(records)} records for {n} embeddings")
    unit = units(records) if records is not None else np.arange(n)
    num_units = int(unit.max()) + 1
    size = np.bincount(unit, minlength=num_units)
    feats = np.zeros((num_units, embeddings.shape[1]), np.float64)
    np.add.at(feats, unit, normalize(embeddings))
    feats = normalize(feats)
    k1_eff = min(k1, num_units - 2)
    k2_eff = max(1, min(k2, k1_eff))
    if k1_eff < 1:
        raise ValueError(f"clustering needs at least 3 tracks or crops, got {num_units}")
    graph = jaccard_graph(feats, k1_eff, k2_eff, chunk,       # only what DBSCAN can use
                          max_distance=1.0 if eps == "auto" else float(eps),
                          max_neighbors=max_neighbors)
    pairs = cannot_link(records, unit) if records is not None else np.zeros((0, 2), np.int64)
    if len(pairs):                           # cannot-link: no edge between the two
        mask = sp.coo_matrix((np.ones(2 * len(pairs), bool),
                              (np.r_[pairs[:, 0], pairs[:, 1]],
                               np.r_[pairs[:, 1], pairs[:, 0]])),
                             shape=graph.shape).tocsr()
        graph = (graph - graph.multiply(mask)).tocsr()
        graph.eliminate_zeros()
    value = eps_from_rho(graph, rho) if eps == "auto" else float(eps)
    unit_labels = DBSCAN(eps=value, min_samples=min_samples, metric="precomputed",
                         n_jobs=1).fit_predict(graph)
    unit_labels, splits = _split_conflicts(unit_labels, pairs, size)
    labels = unit_labels[unit]
    if (labels >= 0).any():                   # a one-crop cluster teaches nothing
        counts = np.bincount(labels[labels >= 0])
        labels[(labels >= 0) & (counts[np.maximum(labels, 0)] < 2)] = -1
    return Clustering(_contiguous(labels), value, num_units, len(pairs), splits)


def agreement(labels: np.ndarray, truth: np.ndarray) -> dict:
    """How the pseudo-labels match hidden identities: purity (share of clustered crops
    in their cluster's majority identity), the adjusted Rand index and NMI over the
    clustered crops, the share clustered, and clusters per true identity."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels, truth = np.asarray(labels), np.asarray(truth)
    kept = labels >= 0
    if not kept.any():
        return {"purity": 0.0, "ari": 0.0, "nmi": 0.0, "clustered": 0.0,
                "clusters_per_identity": 0.0}
    y, t = labels[kept], truth[kept]
    _, t_idx = np.unique(t, return_inverse=True)
    table = sp.coo_matrix((np.ones(len(y)), (y, t_idx))).tocsr()
    purity = float(table.max(axis=1).toarray().sum() / len(y))
    return {"purity": purity, "ari": float(adjusted_rand_score(t, y)),
            "nmi": float(normalized_mutual_info_score(t, y)),
            "clustered": float(kept.mean()),
            "clusters_per_identity": float(len(np.unique(y)) / len(np.unique(truth)))}
