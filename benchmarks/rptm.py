"""Time the RPTM relational-matrix build on real data; a benchmark, not a test.

    .venv/bin/python benchmarks/rptm.py --root ../shared/data/cuhk03_labeled --cache /tmp/rptm_cache

Prints the number of same-identity (ordered) pairs, the wall time and the
count statistics. Re-running with the same cache loads instead of computing.
"""

import logging
import os
import time

from absl import app, flags

ROOT = flags.DEFINE_string("root", "../shared/data/cuhk03_labeled", "CUHK03 folder layout")
CACHE = flags.DEFINE_string("cache", "/tmp/kreid_rptm_cache", "cache directory")
WORKERS = flags.DEFINE_integer("workers", os.cpu_count(), "processes")


def main(argv):
    del argv
    import numpy as np

    from kreid.data import datasets
    from kreid.mining import rptm

    logging.basicConfig(level=logging.INFO)
    ds = datasets.load("cuhk03", ROOT.value)
    start = time.perf_counter()
    matrix = rptm.build_relational_matrix([r.path for r in ds.train], [r.pid for r in ds.train],
                                          CACHE.value, workers=WORKERS.value)
    elapsed = time.perf_counter() - start
    counts = np.concatenate([b[b >= 0] for b in matrix.blocks.values()])
    print(f"{len(ds.train)} images, {len(matrix.members)} identities, {matrix.num_pairs} ordered "
          f"same-identity pairs ({matrix.num_pairs // 2} matched), {WORKERS.value} workers: "
          f"{elapsed:.1f} s")
    print(f"GMS matches per pair: mean {counts.mean():.1f}, median {np.median(counts):.0f}, "
          f"zero {np.mean(counts == 0):.1%}, max {counts.max()}")


if __name__ == "__main__":
    app.run(main)
