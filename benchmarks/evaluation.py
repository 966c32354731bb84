"""Evaluation speed and memory at Market-1501 scale; a benchmark, not a test.

    .venv/bin/python benchmarks/evaluation.py --task=metrics      # 3,368 x 19,732 distmat
    .venv/bin/python benchmarks/evaluation.py --task=loop         # the per-query Python loop
    .venv/bin/python benchmarks/evaluation.py --task=rerank       # k-reciprocal, from features
    .venv/bin/python benchmarks/evaluation.py --task=large        # 3,368 x 519,732 gallery
    .venv/bin/python benchmarks/evaluation.py --task=rerank_dense --num_query=500 --num_gallery=4000
    .venv/bin/python benchmarks/evaluation.py --task=fastreid --fastreid_python=/tmp/cyenv/bin/python \
        --fastreid_pyx=<fast-reid>/fastreid/evaluation/rank_cylib/rank_cy.pyx

``--task=fastreid`` times kreid's metrics and fast-reid's Cython evaluator
(``fastreid_eval.py``, compiled in an environment with numpy + Cython, e.g.
``python -m venv /tmp/cyenv && /tmp/cyenv/bin/pip install cython numpy setuptools``)
on the same distance matrix, best of ``--repeats`` each.

Embeddings are synthetic (751 identities, 6 cameras, 128-d, clustered with
noise), with Market-1501's sizes. Peak memory is this process's max RSS.
"""

import resource
import time

import numpy as np
from absl import app, flags

TASK = flags.DEFINE_enum("task", "metrics",
                        ["metrics", "loop", "rerank", "rerank_dense", "large", "fastreid"],
                        "what to time")
FASTREID_PYTHON = flags.DEFINE_string("fastreid_python", None, "python with numpy + Cython")
FASTREID_PYX = flags.DEFINE_string("fastreid_pyx", None, "fast-reid's rank_cylib/rank_cy.pyx")
REPEATS = flags.DEFINE_integer("repeats", 5, "timed repeats for --task=fastreid (best kept)")
NQ = flags.DEFINE_integer("num_query", 3368, "queries")
NG = flags.DEFINE_integer("num_gallery", 19732, "gallery images (test set)")
DISTRACTORS = flags.DEFINE_integer("distractors", 500000, "extra distractors for --task=large")
NOISE = flags.DEFINE_float("noise", 1.3, "within-identity noise (sets how hard the problem is)")


def problem(seed=0, dim=128):
    rng = np.random.default_rng(seed)
    ids = 751
    centres = rng.normal(size=(ids + 1, dim)).astype(np.float32)
    q_pids = rng.integers(1, ids + 1, NQ.value)
    distractors = min(2800, NG.value // 7)
    g_pids = np.concatenate([rng.integers(1, ids + 1, NG.value - distractors),
                             np.zeros(distractors, int)])           # Market has ~2.8k distractors
    q = centres[q_pids] + NOISE.value * rng.normal(size=(NQ.value, dim)).astype(np.float32)
    g = centres[g_pids] + NOISE.value * rng.normal(size=(NG.value, dim)).astype(np.float32)
    return (q, q_pids, rng.integers(0, 6, NQ.value), g, g_pids, rng.integers(0, 6, NG.value),
            rng, dim)


def peak_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def compare_fastreid(dist, q_pids, g_pids, q_cams, g_cams):
    """kreid's metrics against fast-reid's Cython evaluator on one distance matrix."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from kreid.evaluation import metrics

    if not (FASTREID_PYTHON.value and FASTREID_PYX.value):
        sys.exit("--task=fastreid needs --fastreid_python and --fastreid_pyx")
    times = []
    for _ in range(REPEATS.value):
        start = time.perf_counter()
        res = metrics.evaluate(dist, q_pids, g_pids, q_cams, g_cams)
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "problem.npz")
        np.savez(path, dist=dist, q_pids=q_pids, g_pids=g_pids, q_cams=q_cams, g_cams=g_cams)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fastreid_eval.py")
        done = subprocess.run([FASTREID_PYTHON.value, script, FASTREID_PYX.value, path,
                               str(REPEATS.value)], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{script} failed: {done.stderr[-800:]}")
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"queries": len(q_pids), "gallery": len(g_pids),
                      "kreid_s": round(min(times), 3), "kreid_mAP": round(100 * res["mAP"], 3),
                      "kreid_rank1": round(100 * float(res["cmc"][0]), 3),
                      "fastreid_s": round(theirs["seconds"], 3),
                      "fastreid_mAP": round(100 * theirs["mAP"], 3),
                      "fastreid_rank1": round(100 * theirs["rank1"], 3),
                      "speedup": round(theirs["seconds"] / min(times), 2)}))


def main(argv):
    del argv
    from kreid.evaluation import distances, metrics

    q, q_pids, q_cams, g, g_pids, g_cams, rng, dim = problem()
    if TASK.value == "fastreid":
        return compare_fastreid(distances.distance_matrix(q, g), q_pids, g_pids, q_cams, g_cams)
    if TASK.value in ("metrics", "loop"):
        dist = distances.distance_matrix(q, g)
        start = time.perf_counter()
        if TASK.value == "metrics":
            res = metrics.evaluate(dist, q_pids, g_pids, q_cams, g_cams)
        else:
            import sys
            sys.path.insert(0, ".")
            from tests.evaluation.reference import eval_market
            m_ap, cmc, _, _ = eval_market(dist, q_pids, g_pids, q_cams, g_cams)
            res = {"mAP": m_ap, "cmc": cmc}
        took = time.perf_counter() - start
    elif TASK.value == "rerank_dense":
        import sys
        sys.path.insert(0, ".")
        from tests.evaluation.reference import re_ranking_dense
        start = time.perf_counter()
        dist = re_ranking_dense(distances.distance_matrix(q, g), distances.distance_matrix(q, q),
                                distances.distance_matrix(g, g))
        took = time.perf_counter() - start
        res = metrics.evaluate(dist, q_pids, g_pids, q_cams, g_cams)
    elif TASK.value == "rerank":
        from kreid.evaluation.rerank import re_ranking_features
        start = time.perf_counter()
        dist = re_ranking_features(q, g)
        took = time.perf_counter() - start
        res = metrics.evaluate(dist, q_pids, g_pids, q_cams, g_cams)
    else:
        from kreid.evaluation.large_gallery import evaluate_large
        extra = (rng.normal(size=(DISTRACTORS.value, dim)) * np.sqrt(1 + NOISE.value ** 2)).astype(np.float32)
        g = np.concatenate([g, extra])
        g_pids = np.concatenate([g_pids, np.zeros(DISTRACTORS.value, int)])
        g_cams = np.concatenate([g_cams, rng.integers(0, 6, DISTRACTORS.value)])
        start = time.perf_counter()
        res = evaluate_large(q, q_pids, q_cams, g, g_pids, g_cams)
        took = time.perf_counter() - start
    print(f"task={TASK.value} queries={len(q)} gallery={len(g)}: {took:.2f} s, "
          f"peak RSS {peak_gb():.2f} GB, mAP {100 * res['mAP']:.2f}%, "
          f"rank-1 {100 * res['cmc'][0]:.2f}%")


if __name__ == "__main__":
    app.run(main)
