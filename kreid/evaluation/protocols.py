"""Evaluation protocols on top of :func:`kreid.evaluation.metrics.evaluate`.

* ``market`` (default, also DukeMTMC, MSMT17, VeRi, CUHK03 new protocol and
  the single-shot camera-A-vs-B sets VIPeR/PRID/GRID/CUHK01, whose loaders
  already put camera A in the query and camera B in the gallery): Market
  rules, see ``metrics``.
* ``multi_query``: query embeddings pooled (average or max) per identity and
  camera, each pooled group is one query (Market's multi-query setting when
  the query set holds several images per identity and camera).
* ``tracklet``: frames pooled per tracklet for query and gallery (MARS).
* ``cuhk03_sgs``: the CUHK03 single-gallery-shot metric: for every query one
  random gallery image per identity (same-camera images of the query's
  identity removed first), CMC averaged over ``repeats`` draws; mAP over the
  full gallery (as torchreid's ``eval_cuhk03``).
"""

from __future__ import annotations

import collections

import numpy as np

from kreid.evaluation.distances import distance_matrix
from kreid.evaluation.metrics import evaluate, ranked_gallery

PROTOCOLS = ("market", "multi_query", "tracklet", "cuhk03_sgs")


def pool_groups(embeddings: np.ndarray, keys: np.ndarray, pool: str = "avg"):
    """Pool rows sharing a key; returns (pooled [K, D], index of each group's first row)."""
    if pool not in ("avg", "max"):
        raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    out = np.zeros((len(first), embeddings.shape[1]), np.float64)
    if pool == "avg":
        np.add.at(out, inverse, embeddings)
        out /= np.bincount(inverse)[:, None]
    else:
        out[:] = -np.inf
        np.maximum.at(out, inverse, embeddings)
    return out.astype(np.float32), first


def multi_query(q, g, metric: str = "euclidean", pool: str = "avg", **kwargs) -> dict:
    """q, g: EmbeddingSets. Queries pooled per (pid, camid)."""
    pooled, first = pool_groups(q.embeddings, np.stack([q.pid, q.camid], 1), pool)
    dist = distance_matrix(pooled, g.embeddings, metric)
    return evaluate(dist, q.pid[first], g.pid, q.camid[first], g.camid, **kwargs)


def tracklet(q, g, metric: str = "euclidean", pool: str = "avg", **kwargs) -> dict:
    """MARS: pool frames per tracklet id on both sides, then Market rules."""
    for name, s in (("query", q), ("gallery", g)):
        if (s.trackid < 0).any():
            raise ValueError(f"tracklet protocol: {name} records without a tracklet id")
    qe, qf = pool_groups(q.embeddings, q.trackid[:, None], pool)
    ge, gf = pool_groups(g.embeddings, g.trackid[:, None], pool)
    dist = distance_matrix(qe, ge, metric)
    return evaluate(dist, q.pid[qf], g.pid[gf], q.camid[qf], g.camid[gf], **kwargs)


def cuhk03_single_gallery_shot(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                               repeats: int = 10, seed: int = 0) -> dict:
    """CMC with one random gallery image per identity, averaged over ``repeats`` draws."""
    rng = np.random.default_rng(seed)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    full = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank)
    cmcs = []
    for i in range(len(q_pids)):
        kept_pids = g_pids[ranked_gallery(distmat[i], q_pids[i], q_camids[i], g_pids, g_camids)]
        matches = kept_pids == q_pids[i]
        if not matches.any():
            continue
        groups = collections.defaultdict(list)
        for pos, pid in enumerate(kept_pids):
            groups[pid].append(pos)
        cmc = np.zeros(max_rank)
        for _ in range(repeats):
            chosen = np.sort([rng.choice(v) for v in groups.values()])
            hits = np.cumsum(matches[chosen])[:max_rank] > 0
            cmc[:len(hits)] += hits
            cmc[len(hits):] += hits[-1] if len(hits) else 0
        cmcs.append(cmc / repeats)
    return {"cmc": np.mean(cmcs, axis=0), "mAP": full["mAP"], "mINP": full["mINP"],
            "num_valid_queries": len(cmcs), "repeats": repeats}
