"""Reference algorithms, written plainly after the community code (per-query loops, dense).

* ``eval_market``: the per-query loop of torchreid/fast-reid (standard AP, CMC, mINP).
* ``market_official_ap``: the trapezoid AP of the official Market-1501 code.
* ``re_ranking_dense``: the k-reciprocal re-ranking of Zhong et al. with dense matrices.
"""

import numpy as np


def eval_market(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, ap="standard"):
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    # by distance; at equal distance a negative before a match (ties count against the model)
    indices = np.stack([np.lexsort((g_pids == q_pids[i], distmat[i])) for i in range(num_q)])
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp, valid = [], [], [], 0
    for q in range(num_q):
        order = indices[q]
        remove = ((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])) | \
            (g_pids[order] == -1)
        raw = matches[q][~remove]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        pos = np.where(raw == 1)[0]
        all_inp.append(cmc[pos.max()] / (pos.max() + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        valid += 1
        if ap == "standard":
            tmp = raw.cumsum() / (np.arange(len(raw)) + 1.0) * raw
            all_ap.append(tmp.sum() / raw.sum())
        else:
            all_ap.append(market_official_ap(pos))
    return np.mean(all_ap), np.mean(all_cmc, 0), np.mean(all_inp), valid


def market_official_ap(good_positions):
    """compute_AP of the Market-1501 evaluation code (positions 0-based, junk removed)."""
    ngood = len(good_positions)
    ap, old_recall, old_precision = 0.0, 0.0, 1.0
    for i, pos in enumerate(good_positions):
        recall = (i + 1) / ngood
        precision = (i + 1) / (pos + 1)
        old_precision = i / pos if pos != 0 else 1.0
        ap += (recall - old_recall) * (old_precision + precision) / 2
        old_recall = recall
    return ap


def re_ranking_dense(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    original = np.concatenate([np.concatenate([q_q_dist, q_g_dist], axis=1),
                               np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0)
    original = np.power(original, 2).astype(np.float32)
    original = np.transpose(1.0 * original / np.max(original, axis=0))
    V = np.zeros_like(original).astype(np.float32)
    initial_rank = np.argsort(original).astype(np.int32)
    query_num = q_g_dist.shape[0]
    all_num = original.shape[0]
    for i in range(all_num):
        fwd = initial_rank[i, :k1 + 1]
        back = initial_rank[fwd, :k1 + 1]
        recip = fwd[np.where(back == i)[0]]
        expansion = recip
        for cand in recip:
            half = int(np.around(k1 / 2.0))
            cf = initial_rank[cand, :half + 1]
            cb = initial_rank[cf, :half + 1]
            crecip = cf[np.where(cb == cand)[0]]
            if len(np.intersect1d(crecip, recip)) > 2.0 / 3 * len(crecip):
                expansion = np.append(expansion, crecip)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    original = original[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i] = np.mean(V[initial_rank[i, :k2]], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard = np.zeros_like(original, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(all_num, dtype=np.float32)
        nz = np.where(V[i] != 0)[0]
        for j in nz:
            temp_min[inv_index[j]] += np.minimum(V[i, j], V[inv_index[j], j])
        jaccard[i] = 1 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lambda_value) + original * lambda_value
    return final[:query_num, query_num:]
