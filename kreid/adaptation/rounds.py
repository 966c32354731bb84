"""Adaptation rounds: a trained model -> pseudo-identities on unlabelled crops -> training.

Unsupervised domain adaptation by clustering (Ge et al., SpCL, NeurIPS 2020;
Dai et al., Cluster Contrast, 2021; fast-reid's and OpenUnReID's recipes), in
kreid's pieces. Round r (1..R), in ``<workdir>/round_<r>/``:

1. embed the target's crops with the model the round starts from (round 1:
   ``config.init_from``, the source model; round r: round r-1's
   ``embedding.keras``) -> ``embeddings.npz``;
2. cluster them (:func:`kreid.adaptation.cluster.cluster`: k-reciprocal
   Jaccard distance, DBSCAN, tracks as constraints; ``adapt.labels=oracle``
   takes the target's true labels instead, the supervised bound) ->
   ``pseudo_labels.csv``, ``centroids.npy``, ``clusters.json`` (with the
   agreement to the hidden labels when the target has them);
3. train on the clusters (``adapt.epochs`` passes over the clustered crops, or
   ``adapt.steps`` steps), an ordinary kreid run in the
   round folder (dataset ``pseudo_labels``, started from the round's model,
   ``adapt.losses`` plus the cluster memory initialised at the centroids,
   Adam at a constant ``adapt.base_lr``, PK batches), scored on the target's
   test split when it has one -> ``embedding.keras`` and ``report/``;
4. ``round.json`` marks the round done.

A finished round is skipped; a killed one resumes: its embeddings and
clusters are files, and its training resumes from its last checkpoint. Before
round 1 the source model is scored on the target's test split (the direct
transfer, ``direct.json``). ``adapt.json`` in the workdir sums it all up.
The adapted model is the last round's ``embedding.keras``, an ordinary run:
``bin/evaluate.py`` and ``bin/export.py`` take it like any other.

Where kreid differs from Cluster Contrast and why: the round keeps soft-margin
batch hard beside the memory (the loss the source was trained with; the
memory alone is Cluster Contrast); the memory is re-initialised from the
new clusters each round (as theirs is each epoch); a round is ``adapt.epochs``
passes over the clustered crops (default 4: their epoch of 200-400
iterations of 256 images is 4-8 passes over Market-1501; a fixed step
count over-trains a small target, e.g. 60 passes over iLIDS' clustered crops
in 100 steps, and lost 14 rank-1 points there, #28); the rate is constant, a
tenth of their 3.5e-4 (which starts from ImageNet weights; a converged
source model restarted at 3.5e-4 lost 5-7 rank-1 points on iLIDS in the first
rounds, at 3.5e-5 none, #28); outliers are left out (theirs too; SpCL keeps
them as instances).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from kreid.adaptation import cluster as clustering
from kreid.data import datasets, pipeline
from kreid.data.datasets import pseudo
from kreid.errors import ConfigValueError, EmptySplitError
from kreid.training.plan import Plan, resolve
from kreid.evaluation.reports import write_json
from kreid_edge.files import atomic_write


def _round_dir(workdir: str, r: int) -> str:
    return os.path.join(workdir, f"round_{r:02d}")


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def check_plan(plan: Plan) -> None:
    """What an adaptation needs of the config, named before any file is written."""
    a = plan.adapt
    if not a.target.name:
        raise ConfigValueError("config.adapt.target.name: name the unlabelled target "
                               "(a dataset: unlabelled, unlabelled_csv or any registered one)")
    if not plan.init_from:
        raise ConfigValueError("config.init_from: the source model to adapt (a run's "
                               "embedding.keras) is required")
    if "cluster_memory" in a.losses:
        raise ConfigValueError("config.adapt.losses.cluster_memory: the memory is set by "
                               "config.adapt.memory; leave it out of adapt.losses")


def round_config(plan: Plan, round_dir: str, start: str, num_clusters: int, num_crops: int,
                 has_test: bool) -> dict:
    """The round's training config: the user's, on the round's clusters."""
    a = plan.adapt
    c = json.loads(json.dumps(dict(plan.config), default=str))
    c["dataset"] = dict(name="pseudo_labels", root=round_dir, options=dict(
        target=a.target.name if has_test else "", target_root=a.target.root,
        target_options=dict(a.target.options)))
    c["init_from"] = start
    losses = {k: dict(v) for k, v in a.losses.items()}
    losses["cluster_memory"] = dict(weight=a.memory["weight"],
                                    temperature=a.memory["temperature"],
                                    momentum=a.memory["momentum"],
                                    centroids=os.path.join(round_dir, "centroids.npy"))
    c["losses"] = losses
    p = min(int(c["batch"]["p"]), num_clusters)
    steps = a.steps or max(1, math.ceil(a.epochs * num_crops / (p * int(c["batch"]["k"]))))
    c["stages"], c["epochs"], c["total_steps"] = [], 0, steps
    c["schedule"] = dict(c["schedule"], kind="constant", base_lr=a.base_lr, warmup_steps=0,
                         offset=0)
    c["validation"] = dict(c["validation"], holdout_ids=0, every=0)
    c["batch"] = dict(c["batch"], p=p, camera_balanced=False)   # a new cluster is rarely seen by 2 cameras
    c["qat"] = dict(c["qat"], steps=0)
    c["final_eval"] = dict(c["final_eval"], enabled=has_test)
    c["checkpoint_every"] = max(1, min(int(c["checkpoint_every"]), max(1, steps // 3)))
    return c


def _embed(model_path: str, records, out: str) -> np.ndarray:
    """The round's embeddings of the target crops (``out``, written once, reused on resume)."""
    from kreid.evaluation.embed import EmbeddingSet, embed_records, load_embedder

    if not os.path.exists(out):
        embed_records(load_embedder(model_path), records, label="target").save(out)
    return EmbeddingSet.load(out).embeddings


def _cluster_round(plan: Plan, records, truth, emb, rdir: str) -> dict:
    """Steps 2: the round's pseudo-labels, centroids and statistics (files in ``rdir``)."""
    a = plan.adapt
    path = os.path.join(rdir, "clusters.json")
    if os.path.exists(path) and os.path.exists(os.path.join(rdir, pseudo.LABELS)):
        return _read_json(path)
    start = time.perf_counter()
    if a.labels == "oracle":
        _, labels = np.unique(truth, return_inverse=True)
        result = clustering.Clustering(labels.astype(np.int64), float("nan"), len(records),
                                       0, 0)
    else:
        result = clustering.cluster(emb, records, eps=a.eps, rho=a.rho,
                                    min_samples=a.min_samples, k1=a.k1, k2=a.k2)
    if result.num_clusters < 2:
        raise EmptySplitError(
            f"{rdir}: the clustering found {result.num_clusters} cluster(s) in "
            f"{len(records)} crops (eps {result.eps:.3f}); raise config.adapt.eps (or rho) or lower "
            "config.adapt.min_samples")
    stats = {"crops": len(records), "clusters": result.num_clusters,
             "outliers": result.num_outliers, "eps": result.eps, "units": result.num_units,
             "cannot_link_pairs": result.cannot_link_pairs, "splits": result.splits,
             "seconds": round(time.perf_counter() - start, 2)}
    if truth is not None:
        stats["agreement"] = clustering.agreement(result.labels, truth)
    with atomic_write(os.path.join(rdir, "centroids.npy")) as f:
        np.save(f, result.centroids(emb))
    pseudo.write_labels(os.path.join(rdir, pseudo.LABELS), records, result.labels)
    write_json(stats, path)
    return stats


def _summary_line(r: int, rounds: int, stats: dict) -> str:
    line = (f"round {r}/{rounds}: {stats['crops']} crops -> {stats['clusters']} clusters, "
            f"{stats['outliers']} outliers (eps {stats['eps']:.3f})")
    if "agreement" in stats:
        g = stats["agreement"]
        line += f"; against the hidden labels: purity {g['purity']:.3f}, ARI {g['ari']:.3f}"
    return line


def adapt(config, workdir: str, progress: bool = True) -> dict:
    """Run (or resume) the adaptation of ``config`` in ``workdir``; returns adapt.json's content."""
    from kreid.training.trainer import train

    plan = resolve(config)
    check_plan(plan)
    a = plan.adapt
    target = datasets.load(a.target.name, a.target.root, **dict(a.target.options))
    target.check_nonempty("train")
    records = list(target.train)
    if plan.skip_corrupt:
        records = pipeline.drop_bad_images(records)[0]
    truth = np.array([r.pid for r in records])
    truth = truth if (truth >= 0).all() and len(np.unique(truth)) > 1 else None
    if a.labels == "oracle" and truth is None:
        raise ConfigValueError(f"config.adapt.labels='oracle': the target "
                               f"{a.target.name!r} has no identity labels")
    has_test = bool(target.query) and bool(target.gallery)
    os.makedirs(workdir, exist_ok=True)
    summary = {"target": a.target.name, "root": a.target.root, "source": plan.init_from,
               "crops": len(records), "labels": a.labels, "rounds": []}
    if has_test:
        summary["direct"] = _direct(plan, target, workdir)
    start = plan.init_from
    t0 = time.perf_counter()
    for r in range(1, a.rounds + 1):
        rdir = _round_dir(workdir, r)
        done = os.path.join(rdir, "round.json")
        if os.path.exists(done):
            info = _read_json(done)
        else:
            began = time.perf_counter()
            os.makedirs(rdir, exist_ok=True)
            emb = _embed(start, records, os.path.join(rdir, "embeddings.npz"))
            stats = _cluster_round(plan, records, truth, emb, rdir)
            if progress:
                print(_summary_line(r, a.rounds, stats), flush=True)
            result = train(round_config(plan, rdir, start, stats["clusters"],
                                        stats["crops"] - stats["outliers"], has_test), rdir)
            info = {"round": r, "start": start, "model": result.embedding_path,
                    "clusters": stats, "train_loss": result.scalars.get("loss/total"),
                    "test": _metrics(result.scalars.get("test")),
                    "seconds": round(time.perf_counter() - began, 1)}
            write_json(info, done)
        summary["rounds"].append(info)
        start = info["model"]
        if progress:
            elapsed = time.perf_counter() - t0
            left = elapsed / r * (a.rounds - r)
            test = info.get("test") or {}
            print(f"round {r}/{a.rounds} done"
                  + (f": rank-1 {test['rank1']:.2%}, mAP {test['mAP']:.2%}" if test else "")
                  + f"; ETA {left / 60:.1f} min", flush=True)
    summary["model"] = start
    write_json(summary, os.path.join(workdir, "adapt.json"))
    return summary


def _metrics(res) -> dict | None:
    if not res:
        return None
    cmc = res["cmc"]
    return {"mAP": float(res["mAP"]), "rank1": float(cmc[0]),
            "rank5": float(cmc[min(4, len(cmc) - 1)])}


def _direct(plan: Plan, target, workdir: str) -> dict:
    """The source model on the target's test split, before any adaptation (direct.json)."""
    path = os.path.join(workdir, "direct.json")
    if os.path.exists(path):
        return _read_json(path)
    from kreid.evaluation import reports, runner
    from kreid.evaluation.embed import load_embedder

    f = plan.final_eval
    res, _, _ = runner.evaluate_embedder(load_embedder(plan.init_from), target, tta=f.tta,
                                         metric=f.metric, protocol=f.protocol, rerank=f.rerank,
                                         report_dir=os.path.join(workdir, "direct"),
                                         label="direct transfer")
    print("direct transfer:", reports.summary_line(res), flush=True)
    out = _metrics(res)
    write_json(out, path)
    return out
