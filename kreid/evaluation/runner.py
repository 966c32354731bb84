"""Glue used by the binaries, the trainer's validation and the export comparison:
embed a dataset's query and gallery with an embedder, score them under a
protocol (optionally re-ranked), and write the report."""

from __future__ import annotations

import os

import numpy as np

from kreid.evaluation import protocols, reports
from kreid.evaluation.distances import distance_matrix
from kreid.evaluation.embed import EmbeddingSet, check_same_model, embed_records
from kreid.errors import EmptySplitError
from kreid.evaluation.metrics import evaluate
from kreid.evaluation.rerank import re_ranking


def score(q: EmbeddingSet, g: EmbeddingSet, metric: str = "euclidean",
          protocol: str = "market", rerank: bool = False, ap: str = "standard",
          max_rank: int = 50, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
          allow_mixed_models: bool = False, distmat: np.ndarray | None = None,
          pool: str = "avg"):
    """Returns (results dict, query x gallery distance matrix or None).

    ``pool``: how ``multi_query`` and ``tracklet`` pool a group's embeddings, ``avg``
    (Hermans et al.'s triplet models) or ``max`` ("for our classification based models
    we found max-pooling to work better", Sec. 4.5).

    ``distmat``: a query x gallery distance matrix computed elsewhere (a learned
    metric such as :mod:`~kreid.evaluation.xqda`) used instead of ``metric``.

    Query and gallery embedded by models with different fingerprints are
    refused (:class:`~kreid.errors.ModelMismatchError`) unless ``allow_mixed_models``.
    """
    for name, s in (("query", q), ("gallery", g)):
        if not len(s):
            raise EmptySplitError(f"the {name} set is empty: nothing to evaluate")
    if not allow_mixed_models:
        check_same_model(q, g)
    if protocol not in protocols.PROTOCOLS:
        raise ValueError(f"protocol must be one of {protocols.PROTOCOLS}, got {protocol!r}")
    if distmat is not None and protocol in ("multi_query", "tracklet"):
        raise ValueError(f"protocol {protocol} pools embeddings: it cannot take a distmat")
    if protocol == "multi_query":
        return protocols.multi_query(q, g, metric, pool, ap=ap, max_rank=max_rank), None
    if protocol == "tracklet":
        return protocols.tracklet(q, g, metric, pool, ap=ap, max_rank=max_rank), None
    dist = distance_matrix(q.embeddings, g.embeddings, metric) if distmat is None else distmat
    if rerank:
        dist = re_ranking(dist, distance_matrix(q.embeddings, q.embeddings, metric),
                          distance_matrix(g.embeddings, g.embeddings, metric), k1, k2,
                          lambda_value)
    args = (dist, q.pid, g.pid, q.camid, g.camid)
    if protocol == "cuhk03_sgs":
        res = protocols.cuhk03_single_gallery_shot(*args, max_rank=max_rank)
        res["market"] = evaluate(*args, max_rank=max_rank, ap=ap)
        return res, dist
    return evaluate(*args, max_rank=max_rank, ap=ap), dist


def evaluate_embedder(embedder, dataset, tta: str = "none", metric: str = "euclidean",
                      protocol: str = "market", rerank: bool = False, ap: str = "standard",
                      batch_size: int = 64, report_dir: str | None = None, label: str = "model",
                      progress: bool = False):
    """Embed query + gallery of ``dataset`` and score them; returns (results, q set, g set)."""
    q = embed_records(embedder, dataset.query, tta, batch_size, progress=progress,
                      label=f"{label} query")
    g = embed_records(embedder, dataset.gallery, tta, batch_size, progress=progress,
                      label=f"{label} gallery")
    res, dist = score(q, g, metric, protocol, rerank, ap)
    if report_dir:
        write_report(res, q, g, dist, report_dir, label)
    return res, q, g


def write_report(res: dict, q: EmbeddingSet, g: EmbeddingSet, dist, report_dir: str,
                 label: str = "model") -> dict:
    os.makedirs(report_dir, exist_ok=True)
    files = {"json": reports.write_json(res, os.path.join(report_dir, "metrics.json")),
             "cmc": reports.plot_cmc({label: res["cmc"]}, os.path.join(report_dir, "cmc.png"))}
    if dist is not None and len(q.path) and q.path[0]:
        files["retrieval"] = reports.plot_retrieval(
            dist, q.path, g.path, q.pid, g.pid, q.camid, g.camid,
            os.path.join(report_dir, "retrieval.png"))
    emb = np.concatenate([q.embeddings, g.embeddings])
    pids = np.concatenate([q.pid, g.pid])
    if len(np.unique(pids[pids > 0])) >= 2:
        files["embedding_map"] = reports.plot_embedding_map(
            emb, pids, os.path.join(report_dir, "embedding_map.png"))
    return files
