"""Exact mAP / CMC / mINP for galleries that do not fit as a distance matrix.

The Market-1501 + 500k distractor setting (Hermans et al. 2017, Table 5):
3,368 queries against up to 519,732 gallery images. The gallery is streamed
in chunks; nothing of size Q x G is kept. Per query the distances of its
true matches are found first (a small set), then every chunk only counts,
for each true match, the valid negatives at most as far as it. With those
counts every positive is located exactly, so the metrics equal those of the
full ranking (a negative at a match's exact distance ranks before it, as in
:mod:`kreid.evaluation.metrics`; the match distances come from a separate
product, so only bitwise-equal distances, e.g. identical embeddings under
the Euclidean distance, are ties).
"""

from __future__ import annotations

import numpy as np

from kreid.evaluation.distances import center, distance_chunk


def _match_distances(q, q_pids, q_cams, g, g_pids, g_cams, metric, chunk):
    """Per query: sorted distances of its valid true matches (same pid, other camera)."""
    found = [[] for _ in range(len(q))]
    for s in range(0, len(g), chunk):
        gp, gc = g_pids[s:s + chunk], g_cams[s:s + chunk]
        hit = (gp[None, :] == q_pids[:, None]) & (gc[None, :] != q_cams[:, None])
        qi, gi = np.nonzero(hit)
        if len(qi):
            d = distance_chunk(q[np.unique(qi)], g[s:s + chunk][np.unique(gi)], metric)
            rows = np.searchsorted(np.unique(qi), qi)
            cols = np.searchsorted(np.unique(gi), gi)
            for a, dist in zip(qi, d[rows, cols]):
                found[a].append(dist)
    return [np.sort(np.array(f, np.float64)) for f in found]


def evaluate_large(q: np.ndarray, q_pids, q_camids, g: np.ndarray, g_pids, g_camids,
                   metric: str = "euclidean", max_rank: int = 50, query_chunk: int = 512,
                   gallery_chunk: int = 32768) -> dict:
    """Same result dict as :func:`kreid.evaluation.metrics.evaluate` (standard AP)."""
    q, g = np.asarray(q, np.float32), np.asarray(g, np.float32)
    q_pids, q_cams = np.asarray(q_pids), np.asarray(q_camids)
    g_pids, g_cams = np.asarray(g_pids), np.asarray(g_camids)
    if not (np.isfinite(q).all() and np.isfinite(g).all()):
        raise ValueError("embeddings contain NaN or inf")
    q, g = center(q, g, metric)
    matches = _match_distances(q, q_pids, q_cams, g, g_pids, g_cams, metric, gallery_chunk)
    npos = np.array([len(m) for m in matches])
    width = max(1, npos.max())
    pos_d = np.full((len(q), width), np.inf)
    for i, m in enumerate(matches):
        pos_d[i, :len(m)] = m
    closer = np.zeros((len(q), width), np.int64)   # valid negatives as close as each match
    g_sq = (g * g).sum(1)
    for qs in range(0, len(q), query_chunk):
        qe = slice(qs, qs + query_chunk)
        thr = pos_d[qe, :].max(1, where=np.isfinite(pos_d[qe]), initial=-np.inf)
        for gs in range(0, len(g), gallery_chunk):
            ge = slice(gs, gs + gallery_chunk)
            d = distance_chunk(q[qe], g[ge], metric, g_sq[ge])
            negative = (g_pids[None, ge] != q_pids[qe, None]) & (g_pids[None, ge] != -1)
            cand = negative & (d <= thr[:, None])          # a tie counts against the model
            rows, cols = np.nonzero(cand)
            if not len(rows):
                continue
            vals = d[rows, cols]
            uniq, starts = np.unique(rows, return_index=True)   # rows come sorted
            ends = np.append(starts[1:], len(rows))
            for r, a, b in zip(uniq, starts, ends):
                k = npos[qs + r]
                closer[qs + r, :k] += np.searchsorted(np.sort(vals[a:b]), pos_d[qs + r, :k],
                                                      side="right")
    valid = npos > 0
    if not valid.any():
        raise ValueError("no query has a valid match in the gallery")
    aps, inps, cmc = [], [], np.zeros(min(max_rank, len(g)))
    for i in np.flatnonzero(valid):
        k = npos[i]
        ranks = closer[i, :k] + np.arange(k)           # 0-based rank of each match
        aps.append(np.mean((np.arange(k) + 1) / (ranks + 1)))
        inps.append(k / (ranks[-1] + 1))
        cmc[ranks[0]:] += 1
    return {"mAP": float(np.mean(aps)), "cmc": cmc / valid.sum(), "mINP": float(np.mean(inps)),
            "num_valid_queries": int(valid.sum()), "num_skipped_queries": int((~valid).sum())}
