"""What bounds the pseudo-labels of an adaptation run (#28), from its saved embeddings.

    .venv/bin/python benchmarks/adapt_probe.py --runs=runs/adapt --tag=final_s0 \
        --targets=viper:VIPeR,prid:PRID,grid:GRID --data=../shared/data

For each target, reads the source model's embeddings of the target's training
crops (``<runs>/<target>_clusters_<tag>/round_01/embeddings.npz``, written by
round 1 before it trains) and the crops' hidden identities and cameras (the
dataset loader), then prints:

* the source's cross-camera rank-1 among those crops (each crop's nearest
  crop from another camera, cosine): how often the closest candidate a
  clustering could join is the same person;
* the clustering's pair precision (the share of same-cluster pairs that are
  one person), the share clustered and the ARI, at several k1 (k2 =
  max(2, k1 // 3): the defaults' 5/2, SpCL's ratio above; MMT's eps rule), on
  the raw embeddings and with each camera's mean embedding subtracted (camera
  centring, a common camera-bias correction).

Light on CPU (seconds): clustering a few hundred crops.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags

from kreid.adaptation import cluster as clustering
from kreid.data import datasets

RUNS = flags.DEFINE_string("runs", "runs/adapt", "folder of the adaptation workdirs")
TAG = flags.DEFINE_string("tag", "final_s0", "workdir suffix")
TARGETS = flags.DEFINE_list("targets", ["viper:VIPeR", "prid:PRID", "grid:GRID"],
                            "dataset:folder under <data>/peta (datasets with cameras)")
DATA = flags.DEFINE_string("data", "../shared/data", "the data root")
K1 = flags.DEFINE_list("k1", ["5", "10", "20"], "k-reciprocal neighbourhoods to try")


def cross_camera_rank1(features: np.ndarray, pid: np.ndarray, cam: np.ndarray) -> float:
    f = clustering.normalize(features)
    sim = f @ f.T
    sim[cam[:, None] == cam[None, :]] = -np.inf
    return float((pid[sim.argmax(1)] == pid).mean())


def camera_centred(features: np.ndarray, cam: np.ndarray) -> np.ndarray:
    f = clustering.normalize(features).copy()
    for c in np.unique(cam):
        f[cam == c] -= f[cam == c].mean(0)
    return f


def pair_precision(labels: np.ndarray, pid: np.ndarray) -> float:
    kept = labels >= 0
    same = (labels[:, None] == labels[None, :]) & kept[:, None] & kept[None, :]
    np.fill_diagonal(same, False)
    return float((same & (pid[:, None] == pid[None, :])).sum() / max(1, same.sum()))


def main(argv):
    del argv
    print("| target | features | cross-camera rank-1 | " + " | ".join(
        f"k1={k}: pair precision / clustered / ARI" for k in K1.value) + " |")
    print("|---|---|---|" + "---|" * len(K1.value))
    for spec in TARGETS.value:
        name, folder = spec.split(":")
        run = os.path.join(RUNS.value, f"{name}_clusters_{TAG.value}", "round_01")
        saved = np.load(os.path.join(run, "embeddings.npz"))
        by_path = {r.path: r for r in datasets.load(
            name, os.path.join(DATA.value, "peta", folder)).train}
        missing = [p for p in saved["paths"] if p not in by_path]
        if missing:
            raise SystemExit(f"{run}/embeddings.npz: {len(missing)} crops are not in "
                             f"{name}'s training split, e.g. {missing[0]}")
        records = [by_path[p] for p in saved["paths"]]
        pid = np.array([r.pid for r in records])
        cam = np.array([r.camid for r in records])
        for tag, feats in (("raw", saved["embeddings"]),
                           ("camera-centred", camera_centred(saved["embeddings"], cam))):
            cells = []
            for k1 in map(int, K1.value):
                c = clustering.cluster(feats, None, k1=k1, k2=max(2, k1 // 3))
                a = clustering.agreement(c.labels, pid)
                cells.append(f"{pair_precision(c.labels, pid):.3f} / {a['clustered']:.2f} / "
                             f"{a['ari']:.3f}")
            print(f"| {name} | {tag} | {cross_camera_rank1(feats, pid, cam):.3f} | "
                  + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
