"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) with sparse structures.

Gives the distances of the authors' reference algorithm, which builds
several dense (Q+G)^2 matrices (about 8 GB at Market-1501 size). Here:

1. the (Q+G) x (Q+G) squared distances are only ever visited in row chunks
   (from given matrices or computed from features), each row normalised by
   its maximum as in the reference;
2. a first pass keeps the top-(k1+1) ranks of every row;
3. k-reciprocal sets and their expansion are found from these ranks; the
   encoding V (Gaussian weights over the expanded set) is a sparse matrix;
4. query expansion (mean of the k2 nearest rows) is a sparse product;
5. the Jaccard distance of each query to the gallery uses an inverted
   index (CSC columns) of the gallery rows;
6. final = (1 - lambda) * Jaccard + lambda * normalised original distance.

Peak memory is O((Q+G) * chunk + nnz(V) + Q*G).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

RowSource = Callable[[int, int], np.ndarray]   # rows [s, e) of the (Q+G)^2 *squared* distances


def _matrix_rows(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> RowSource:
    nq = q_g.shape[0]

    def rows(s: int, e: int) -> np.ndarray:
        parts = []
        if s < nq:
            a, b = s, min(e, nq)
            parts.append(np.concatenate([q_q[a:b], q_g[a:b]], axis=1))
        if e > nq:
            a, b = max(s, nq) - nq, e - nq
            parts.append(np.concatenate([q_g[:, a:b].T, g_g[a:b]], axis=1))
        d = np.concatenate(parts).astype(np.float32)
        return np.square(d, out=d)
    return rows


def _feature_rows(q: np.ndarray, g: np.ndarray) -> RowSource:
    allf = np.concatenate([q, g]).astype(np.float32)
    allf -= allf.mean(0)                    # translation-invariant; keeps float32 precise
    sq = (allf * allf).sum(1)

    def rows(s: int, e: int) -> np.ndarray:
        d = sq[s:e, None] - 2.0 * allf[s:e] @ allf.T + sq[None, :]
        return np.maximum(d, 0.0, out=d)
    return rows


def _reciprocal_chunked(ranks: np.ndarray, k: int, chunk: int) -> list[np.ndarray]:
    """For every i, the members j of its top-(k+1) whose own top-(k+1) contains i."""
    out: list[np.ndarray] = []
    for s in range(0, len(ranks), chunk):      # [chunk, k+1, k+1] at a time, not [N, ...]
        fwd = ranks[s:s + chunk, :k + 1]
        back = ranks[fwd, :k + 1]
        mask = (back == np.arange(s, s + len(fwd))[:, None, None]).any(2)
        out.extend(fwd[i][mask[i]] for i in range(len(fwd)))
    return out


def _encode(rows: RowSource, n: int, k1: int, k2: int, chunk: int):
    """Passes 1, 2 and 4: the ranks, the row maxima and the query-expanded sparse V."""
    k = max(k1 + 1, k2)
    if n < k:
        raise ValueError(f"re-ranking needs more than k1={k1} (and at least k2={k2}) items; "
                         f"got {n}")
    ranks = np.empty((n, k), np.int64)
    row_max = np.empty(n, np.float32)
    for s in range(0, n, chunk):                            # pass 1: ranks and row maxima
        d = rows(s, min(s + chunk, n))
        row_max[s:s + len(d)] = d.max(1)
        top = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, top, 1), axis=1, kind="stable")
        ranks[s:s + len(d)] = np.take_along_axis(top, order, 1)
    row_max = np.maximum(row_max, 1e-12)
    half = int(np.around(k1 / 2.0))
    recip = _reciprocal_chunked(ranks, k1, chunk)
    recip_half = _reciprocal_chunked(ranks, half, chunk)
    indptr, indices, data = [0], [], []
    for s in range(0, n, chunk):                            # pass 2: sparse encoding V
        d = rows(s, min(s + chunk, n)) / row_max[s:min(s + chunk, n), None]
        for r in range(len(d)):
            i = s + r
            base = recip[i]
            expansion = [base]
            base_set = set(base.tolist())
            for c in base:
                cand = recip_half[c]
                if len(base_set.intersection(cand.tolist())) > 2.0 / 3.0 * len(cand):
                    expansion.append(cand)
            idx = np.unique(np.concatenate(expansion))
            w = np.exp(-d[r, idx])
            indices.append(idx)
            data.append(w / w.sum())
            indptr.append(indptr[-1] + len(idx))
    v = sp.csr_matrix((np.concatenate(data).astype(np.float32), np.concatenate(indices),
                       np.array(indptr)), shape=(n, n))
    if k2 != 1:                                             # query expansion
        a = sp.csr_matrix((np.full(n * k2, 1.0 / k2, np.float32), ranks[:, :k2].ravel(),
                           np.arange(0, n * k2 + 1, k2)), shape=(n, n))
        v = (a @ v).tocsr()
    return v, row_max


def _rerank(rows: RowSource, nq: int, n: int, k1: int, k2: int, lambda_value: float,
            chunk: int) -> np.ndarray:
    v, row_max = _encode(rows, n, k1, k2, chunk)
    vg = v[nq:].tocsc()
    ng = n - nq
    final = np.empty((nq, ng), np.float32)
    for s in range(0, nq, chunk):                           # pass 3: Jaccard + original
        original = rows(s, min(s + chunk, nq))[:, nq:] / row_max[s:min(s + chunk, nq), None]
        for r in range(len(original)):
            i = s + r
            row = v.getrow(i)
            cols, vals = row.indices, row.data
            sub = vg[:, cols]
            col_of = np.repeat(np.arange(len(cols)), np.diff(sub.indptr))
            shared = np.bincount(sub.indices, np.minimum(sub.data, vals[col_of]), minlength=ng)
            jaccard = 1.0 - shared / (2.0 - shared)
            final[i] = jaccard * (1 - lambda_value) + original[r] * lambda_value
    return final


def jaccard_graph(features: np.ndarray, k1: int = 30, k2: int = 6, chunk: int = 1024,
                  max_distance: float = 1.0, max_neighbors: int = 0,
                  budget: int = 8_000_000) -> sp.csr_matrix:
    """The k-reciprocal Jaccard distance of every pair of ``features`` as a sparse matrix.

    The same distance as :func:`re_ranking_features` with ``lambda_value=0`` (the
    encoding V over all the items, with its query expansion), for clustering
    (:mod:`kreid.adaptation.cluster`): a pair whose expanded k-reciprocal sets do
    not overlap is at distance 1 and is *not stored*; neither is a pair farther
    than ``max_distance``, nor, with ``max_neighbors`` > 0, any but each row's
    ``max_neighbors`` nearest. Stored entries, the diagonal included, are at
    least 1e-6, so that a distance of zero stays an entry. Never N x N: rows meet
    V's columns through V's transpose (an inverted index), fully vectorised, in
    groups of rows whose (row, column, row) incidences stay under ``budget``
    (about 20 bytes each), so memory is O(N * chunk + nnz(V) + budget +
    nnz(result)).
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or not np.isfinite(features).all():
        raise ValueError(f"features: expected a finite [N, D] array, got shape "
                         f"{features.shape}" + ("" if features.ndim != 2 else
                                                " with NaN or inf values"))
    n = len(features)
    v, _ = _encode(_feature_rows(features[:0], features), n, k1, k2, chunk)
    vt = v.T.tocsr()                                        # column c -> the rows holding it
    col_count = np.diff(vt.indptr)
    per_row = np.bincount(np.repeat(np.arange(n), np.diff(v.indptr)),
                          weights=col_count[v.indices], minlength=n).astype(np.int64)
    out, s = [], 0
    while s < n:                                            # rows [s, e) within the budget
        e = s + max(1, int(np.searchsorted(np.cumsum(per_row[s:]), budget, side="right")))
        e = min(e, n)
        block = v[s:e].tocoo()                              # (i, c, V_ic) of the rows
        counts = col_count[block.col]
        starts = np.repeat(vt.indptr[block.col], counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        pos = starts + offsets                              # every (i, c, j) with V_jc > 0
        shared = sp.coo_matrix(
            (np.minimum(np.repeat(block.data, counts), vt.data[pos]),
             (np.repeat(block.row, counts), vt.indices[pos])),
            shape=(e - s, n)).tocsr()                       # duplicates summed: sum_c min
        del starts, offsets, pos
        shared.sum_duplicates()
        dist = 1.0 - shared.data / (2.0 - shared.data)
        keep = dist <= max_distance
        if max_neighbors > 0:                               # each row's nearest only
            row = np.repeat(np.arange(e - s), np.diff(shared.indptr))
            order = np.lexsort((dist, row))                 # by row, then distance
            rank = np.empty(len(dist), np.int64)
            rank[order] = np.arange(len(dist)) - shared.indptr[row[order]]
            keep &= rank < max_neighbors
        shared.data = np.maximum(dist, 1e-6).astype(np.float32)
        shared.data[~keep] = 0.0
        shared.eliminate_zeros()
        out.append(shared)
        s = e
    return sp.vstack(out, format="csr")


def re_ranking(q_g_dist: np.ndarray, q_q_dist: np.ndarray, g_g_dist: np.ndarray, k1: int = 20,
               k2: int = 6, lambda_value: float = 0.3, chunk: int = 2048) -> np.ndarray:
    """Re-ranked query x gallery distances from the three distance matrices."""
    q_g_dist, q_q_dist, g_g_dist = (np.asarray(x) for x in (q_g_dist, q_q_dist, g_g_dist))
    nq, ng = q_g_dist.shape
    if q_q_dist.shape != (nq, nq) or g_g_dist.shape != (ng, ng):
        raise ValueError(f"shapes: q_g {q_g_dist.shape}, q_q {q_q_dist.shape} (want "
                         f"{(nq, nq)}), g_g {g_g_dist.shape} (want {(ng, ng)})")
    return _rerank(_matrix_rows(q_g_dist, q_q_dist, g_g_dist), nq, nq + ng, k1, k2,
                   lambda_value, chunk)


def re_ranking_features(q: np.ndarray, g: np.ndarray, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3, chunk: int = 2048) -> np.ndarray:
    """Re-ranking from embeddings with Euclidean distances, never holding a (Q+G)^2 matrix."""
    return _rerank(_feature_rows(q, g), len(q), len(q) + len(g), k1, k2, lambda_value, chunk)
