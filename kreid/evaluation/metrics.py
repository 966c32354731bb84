"""mAP, CMC and mINP under the Market-1501 rules, vectorised over queries.

For each query the gallery is ranked by distance; gallery images of the
query's identity *and* camera are removed, as is junk (pid -1); distractors
(pid 0) stay as negatives. A query without any remaining true match is
skipped and counted. ``ap='standard'`` is the mean of the precision at each
hit (torchreid / fast-reid); ``ap='market'`` is the trapezoid rule of the
official Market-1501 evaluation code.
"""

from __future__ import annotations

import numpy as np

AP_MODES = ("standard", "market")


def _rank_chunk(dist, q_pids, g_pids, q_cams, g_cams, max_rank, ap):
    order = np.argsort(dist, axis=1, kind="stable")
    gp, gc = g_pids[order], g_cams[order]
    same = gp == q_pids[:, None]
    valid = ~(same & (gc == q_cams[:, None])) & (gp != -1)
    hits = same & valid
    pos = np.maximum(np.cumsum(valid, axis=1) - 1, 0)  # rank among valid items (read at hits)
    num_hits = hits.sum(1)
    ok = num_hits > 0
    hits, pos, valid, num_hits = hits[ok], pos[ok], valid[ok], num_hits[ok]
    cum_hits = np.cumsum(hits, axis=1)
    if ap == "standard":
        prec = np.where(hits, cum_hits / (pos + 1.0), 0.0)
        aps = prec.sum(1) / num_hits
    else:  # trapezoid between the precision just before and at each hit
        prec = cum_hits / (pos + 1.0)
        old = np.where(pos > 0, (cum_hits - 1) / np.maximum(pos, 1.0), 1.0)
        aps = np.where(hits, (prec + old) / 2.0, 0.0).sum(1) / num_hits
    first = np.argmax(hits, axis=1)
    first_rank = pos[np.arange(len(first)), first]
    last = hits.shape[1] - 1 - np.argmax(hits[:, ::-1], axis=1)
    inp = num_hits / (pos[np.arange(len(last)), last] + 1.0)
    cmc = (first_rank[:, None] <= np.arange(max_rank)[None, :]).astype(np.float64)
    return aps, inp, cmc, int((~ok).sum())


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
