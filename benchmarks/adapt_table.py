"""The adaptation evidence table of BENCHMARKS.md (#28) from finished adaptation runs.

    .venv/bin/python benchmarks/adapt_table.py --runs=runs/adapt --tag=final_s0 \
        --targets=viper,prid,grid,ilids,3dpes

Reads ``<runs>/<target>_clusters_<tag>/adapt.json`` (the adapted runs) and
``<runs>/<target>_oracle_<tag>/adapt.json`` (the same rounds on the true labels:
the supervised bound) and prints, per target: direct transfer, adapted and
supervised rank-1 / mAP (last round), the adapted gain in rank-1 points, the
share of the gap to the supervised bound it closes, and the clusters' purity
(share of clustered crops in their cluster's majority identity), ARI and the
share of crops clustered, per round.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

RUNS = flags.DEFINE_string("runs", "runs/adapt", "folder of the adaptation workdirs")
TAG = flags.DEFINE_string("tag", "final_s0", "workdir suffix")
TARGETS = flags.DEFINE_list("targets", ["viper", "prid", "grid", "ilids", "3dpes"], "targets")


def _load(path):
    with open(os.path.join(path, "adapt.json")) as f:
        return json.load(f)


def main(argv):
    del argv
    rows, rounds = [], []
    gains, closed = [], []
    for t in TARGETS.value:
        a = _load(os.path.join(RUNS.value, f"{t}_clusters_{TAG.value}"))
        o = _load(os.path.join(RUNS.value, f"{t}_oracle_{TAG.value}"))
        d, ad, su = a["direct"], a["rounds"][-1]["test"], o["rounds"][-1]["test"]
        gain = 100 * (ad["rank1"] - d["rank1"])
        gap = 100 * (su["rank1"] - d["rank1"])
        share = gain / gap if gap > 0 else float("nan")
        gains.append(gain)
        closed.append(share)
        rows.append(f"| {t} | {a['crops']} | {100 * d['rank1']:.1f} / {100 * d['mAP']:.1f} | "
                    f"{100 * ad['rank1']:.1f} / {100 * ad['mAP']:.1f} | "
                    f"{100 * su['rank1']:.1f} / {100 * su['mAP']:.1f} | {gain:+.1f} | "
                    f"{100 * share:.0f}% |")
        rounds.append(f"| {t} | " + " | ".join(
            f"{r['clusters']['clusters']} / {r['clusters']['agreement']['purity']:.2f} / "
            f"{r['clusters']['agreement']['ari']:.2f} / "
            f"{r['clusters']['agreement']['clustered']:.2f}" for r in a["rounds"]) + " |")
    print("| target | train crops | direct rank-1 / mAP | adapted | supervised bound | "
          "adapted - direct (rank-1 pts) | gap closed |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nsubsets with a gain of 5+ rank-1 points: {sum(g >= 5 for g in gains)} of "
          f"{len(gains)}; mean gap closed: {100 * sum(closed) / len(closed):.0f}%\n")
    n = max(len(_load(os.path.join(RUNS.value, f"{t}_clusters_{TAG.value}"))["rounds"])
            for t in TARGETS.value)
    print("| target | " + " | ".join(f"round {i + 1}" for i in range(n)) + " |")
    print("|---|" + "---|" * n)
    print("\n".join(rounds))


if __name__ == "__main__":
    app.run(main)
