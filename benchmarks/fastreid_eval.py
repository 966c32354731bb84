"""fast-reid's Cython evaluator timed on a saved problem: run by ``evaluation.py --task=fastreid``.

    <python with numpy + Cython> benchmarks/fastreid_eval.py RANK_CY_PYX PROBLEM_NPZ REPEATS

Compiles fast-reid's ``fastreid/evaluation/rank_cylib/rank_cy.pyx`` (read from a
checkout, never copied into kreid) into a temporary folder, then times
``evaluate_cy`` (Market-1501 protocol, max_rank 50) on the distance matrix and
ids of PROBLEM_NPZ and prints one JSON line: best time of REPEATS, mAP, rank-1.
fast-reid and Cython are not kreid dependencies: use their own virtualenv.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def build(pyx: str, where: str):
    shutil.copy(pyx, os.path.join(where, "rank_cy.pyx"))
    with open(os.path.join(where, "setup.py"), "w") as f:
        f.write("from setuptools import setup, Extension\nimport numpy\n"
                "from Cython.Build import cythonize\n"
                "setup(ext_modules=cythonize([Extension('rank_cy', ['rank_cy.pyx'], "
                "include_dirs=[numpy.get_include()], extra_compile_args=['-O3'])], "
                "language_level=3))\n")
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=where,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"building {pyx} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    sys.path.insert(0, where)
    import rank_cy
    return rank_cy


def main():
    pyx, problem, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import numpy as np

    with tempfile.TemporaryDirectory() as where:
        rank_cy = build(pyx, where)
        p = np.load(problem)
        args = (p["dist"], p["q_pids"], p["g_pids"], p["q_cams"], p["g_cams"], 50)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            cmc, all_ap, all_inp = rank_cy.evaluate_cy(*args)
            times.append(time.perf_counter() - start)
    # fast-reid averages AP over all queries (0 for a query without a true match); the
    # benchmark's problem gives every query one, so this equals kreid's valid-query mean
    print(json.dumps({"seconds": min(times), "mAP": float(np.mean(all_ap)),
                      "rank1": float(cmc[0])}))


if __name__ == "__main__":
    main()
