"""mAP, CMC and mINP under the Market-1501 rules, without sorting the gallery.

For each query the gallery is ranked by distance; gallery images of the
query's identity *and* camera are removed, as is junk (pid -1); distractors
(pid 0) stay as negatives. A query without any remaining true match is
skipped and counted. ``ap='standard'`` is the mean of the precision at each
hit (torchreid / fast-reid); ``ap='market'`` is the trapezoid rule of the
official Market-1501 evaluation code.

A negative at exactly the distance of a true match ranks before it: ties
count against the model. (torchreid and fast-reid leave tie order to
``argsort``; counting ties in the model's favour would give a collapsed model,
one embedding for every image, an mAP of 100%.)
"""

from __future__ import annotations

import numpy as np

AP_MODES = ("standard", "market")


def match_ranks(dist_row: np.ndarray, same: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """0-based ranks, among the valid gallery items, of the valid true matches (ascending).

    No full sort: with the K match distances sorted, every negative is placed
    among them by binary search (O(G log K)); the number of negatives closer
    than (or as close as) the k-th match plus k is that match's rank.
    """
    pos = np.sort(dist_row[same & valid])
    neg = dist_row[valid & ~same]
    slots = np.searchsorted(pos, neg, side="left")      # matches strictly before each negative
    closer = np.cumsum(np.bincount(slots, minlength=len(pos) + 1))[:len(pos)]
    return closer + np.arange(len(pos))


def ranked_gallery(dist_row: np.ndarray, q_pid, q_camid, g_pids: np.ndarray,
                   g_camids: np.ndarray) -> np.ndarray:
    """Gallery indices in rank order for one query, as :func:`evaluate` ranks them: by
    distance, a negative before a match at equal distance, without the query's
    same-camera matches and junk (pid -1). For the protocols that need the full list."""
    order = np.lexsort((g_pids == q_pid, dist_row))
    keep = ~((g_pids[order] == q_pid) & (g_camids[order] == q_camid)) & (g_pids[order] != -1)
    return order[keep]


def _scores(ranks: np.ndarray, ap: str) -> tuple[float, float]:
    k = np.arange(1, len(ranks) + 1)
    precision = k / (ranks + 1.0)
    if ap == "standard":
        ap_value = precision.mean()
    else:  # trapezoid between the precision just before and at each hit
        old = np.where(ranks > 0, (k - 1) / np.maximum(ranks, 1.0), 1.0)
        ap_value = ((precision + old) / 2.0).mean()
    return float(ap_value), float(len(ranks) / (ranks[-1] + 1.0))


def _rank_chunk(dist, q_pids, g_pids, q_cams, g_cams, max_rank, ap):
    same = g_pids[None, :] == q_pids[:, None]
    valid = ~(same & (g_cams[None, :] == q_cams[:, None])) & (g_pids[None, :] != -1)
    aps, inps, firsts, skipped = [], [], [], 0
    for i in range(len(dist)):
        ranks = match_ranks(dist[i], same[i], valid[i])
        if not len(ranks):
            skipped += 1
            continue
        a, inp = _scores(ranks, ap)
        aps.append(a), inps.append(inp), firsts.append(ranks[0])
    cmc = (np.array(firsts)[:, None] <= np.arange(max_rank)[None, :]).astype(np.float64)
    return np.array(aps), np.array(inps), cmc.reshape(-1, max_rank), skipped


def evaluate(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
             ap: str = "standard", chunk: int = 256) -> dict:
    """Score a query x gallery distance matrix.

    Returns a dict: ``mAP``, ``cmc`` (fractions, length ``min(max_rank, G)``),
    ``mINP`` (Ye et al. 2021), ``num_valid_queries`` and ``num_skipped_queries``.
    """
    if ap not in AP_MODES:
        raise ValueError(f"ap must be one of {AP_MODES}, got {ap!r}")
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    nq, ng = distmat.shape if distmat.ndim == 2 else (-1, -1)
    if distmat.ndim != 2 or q_pids.shape != (nq,) or q_camids.shape != (nq,) \
            or g_pids.shape != (ng,) or g_camids.shape != (ng,):
        raise ValueError(f"distmat {distmat.shape} must be (Q, G) with Q = len(q_pids) = "
                         f"{q_pids.shape}, G = len(g_pids) = {g_pids.shape}")
    if np.isnan(distmat).any():
        raise ValueError("distmat contains NaN (are the embeddings NaN?)")
    max_rank = min(max_rank, ng)
    aps, inps, cmcs, skipped = [], [], [], 0
    for s in range(0, nq, chunk):
        a, i, c, k = _rank_chunk(distmat[s:s + chunk], q_pids[s:s + chunk], g_pids,
                                 q_camids[s:s + chunk], g_camids, max_rank, ap)
        aps.append(a), inps.append(i), cmcs.append(c)
        skipped += k
    aps, inps, cmcs = np.concatenate(aps), np.concatenate(inps), np.concatenate(cmcs)
    if len(aps) == 0:
        raise ValueError("no query has a valid match in the gallery")
    return {"mAP": float(aps.mean()), "cmc": cmcs.mean(0), "mINP": float(inps.mean()),
            "num_valid_queries": int(len(aps)), "num_skipped_queries": skipped}
