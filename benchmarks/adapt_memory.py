"""The adaptation's clustering at scale: time and peak memory of Jaccard + DBSCAN (#28).

    .venv/bin/python benchmarks/adapt_memory.py --n=100000 --dim=128

Synthetic embeddings: ``n`` points in ``dim`` dimensions, identities of 2 to 20
images (a Gaussian centre each, unit-variance noise scaled by ``--spread``),
embedded in a random background so that neighbours of other identities are
near. Runs :func:`kreid.adaptation.cluster.cluster` (``--k1``, ``--k2``, eps auto or
given) in this process and prints the wall time of each part and the peak
resident memory of the process (``ru_maxrss``), with the number of stored
Jaccard entries. OpenUnReID's dense N x N distance needs 128+ GB at 200,000
images (its issue #9); the bar of #28 is 4 GB at 100,000.
"""

from __future__ import annotations

import resource
import time

from absl import app, flags

N = flags.DEFINE_integer("n", 100_000, "number of embeddings")
DIM = flags.DEFINE_integer("dim", 128, "embedding dimension")
SPREAD = flags.DEFINE_float("spread", 0.5, "within-identity noise relative to the centres")
EPS = flags.DEFINE_string("eps", "0.6", "DBSCAN eps (a number) or auto")
SEED = flags.DEFINE_integer("seed", 0, "random seed")
K1 = flags.DEFINE_integer("k1", 30, "k-reciprocal k1 (30: SpCL's; kreid's default 5)")
K2 = flags.DEFINE_integer("k2", 6, "query expansion k2")


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def main(argv):
    del argv
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from kreid.adaptation import cluster as C

    rng = np.random.default_rng(SEED.value)
    sizes = []
    while sum(sizes) < N.value:
        sizes.append(int(rng.integers(2, 21)))
    sizes[-1] -= sum(sizes) - N.value
    truth = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(size=(len(sizes), DIM.value)).astype(np.float32)
    x = centres[truth] + SPREAD.value * rng.normal(size=(N.value, DIM.value)).astype(np.float32)
    print(f"{N.value} embeddings, {len(sizes)} identities of 2-20, dim {DIM.value}; "
          f"peak so far {_peak_gb():.2f} GB", flush=True)
    t = time.perf_counter()
    eps = EPS.value if EPS.value == "auto" else float(EPS.value)
    result = C.cluster(x, eps=eps, min_samples=2, k1=K1.value, k2=K2.value)
    t_all = time.perf_counter() - t
    kept = result.labels >= 0
    print(f"cluster() (Jaccard graph + DBSCAN): {t_all:.0f} s; {result.num_clusters} clusters, "
          f"{result.num_outliers} outliers, eps {result.eps:.3f}, ARI on the clustered "
          f"{adjusted_rand_score(truth[kept], result.labels[kept]):.3f}; "
          f"peak resident memory of the process {_peak_gb():.2f} GB", flush=True)


if __name__ == "__main__":
    app.run(main)
