"""Why the reproduction's offline-hard-mining arm does not learn (#29): its mining, varied.

    .venv/bin/python benchmarks/ohm_probe.py --data=../shared/data --out=runs/ohm_probe \
        --variants=study,all_ids,all_ids_semi --seed=0

Hermans et al.'s Table 1 "Triplet + OHM" at margin 0.2 learns (61.4 mAP on
Market, LuNet, 25k steps); the paper gives no mining schedule beyond
"embedding a large fraction of the data with the most recent f_theta". The
reproduction's arm (hermans_table1 "Trip.+OHM 0.2": 300 steps, mining every
100 steps over 100 of the 593 training identities, each anchor's hardest
positive and hardest negative) falls below random triplets. Each variant
trains that arm once with its mining changed and scores it on the study's
150 held-out identities:

* ``study``: the arm as the study runs it;
* ``all_ids``: every training identity embedded at every mining, every 50 steps;
* ``all_ids_semi``: as ``all_ids``, a random positive instead of the hardest
  (hardest negative kept): is the hardest-positive choice what stalls it?
* ``random``: the random-triplet arm ("Trip. 0.2"), the reference.
"""

from __future__ import annotations

import json
import os

from absl import app, flags

DATA = flags.DEFINE_string("data", "../shared/data", "the real data folder")
OUT = flags.DEFINE_string("out", "runs/ohm_probe", "output folder")
VARIANTS = flags.DEFINE_list("variants", ["study", "all_ids", "all_ids_semi", "random"],
                             "variants to run")
SEED = flags.DEFINE_integer("seed", 0, "seed")
STEPS = 300


def main(argv):
    del argv
    import numpy as np

    from kreid.mining import triplets as mining
    from kreid.reproduction.runner import score_run
    from kreid.reproduction.studies import STUDIES, base_config
    from kreid.training.trainer import Trainer

    study = STUDIES["hermans_table1"]
    arms = {a.name: a for a in study.arms}
    hardest = mining.hard_triplets
    for variant in VARIANTS.value:
        work = os.path.join(OUT.value, f"{variant}_seed{SEED.value}")
        done = os.path.join(work, "probe.json")
        if os.path.exists(done) and "main" in json.load(open(done)):
            print(variant, open(done).read())
            continue
        c = base_config(study, DATA.value, STEPS, False, OUT.value)
        arms["Trip. 0.2" if variant == "random" else "Trip.+OHM 0.2"].apply(c)
        c.seed = SEED.value
        if variant.startswith("all_ids"):
            c.ohm = dict(every=50, identities=10 ** 6)
        if variant == "all_ids_semi":
            def semi(embeddings, labels, _rng=np.random.default_rng(SEED.value)):
                t = hardest(embeddings, labels)
                labels = np.asarray(labels)
                for row in t:                       # a random other image of the anchor
                    same = np.flatnonzero(labels == labels[row[0]])
                    row[1] = _rng.choice(same[same != row[0]])
                return t
            mining.hard_triplets = semi
        else:
            mining.hard_triplets = hardest
        trained = Trainer(c, work, progress=True).run()
        res = score_run(study, trained, DATA.value, False)
        out = {"main": {k: float(v) for k, v in res["main"].items()
                        if isinstance(v, (int, float))}}
        out["train_losses"] = {k: float(v) for k, v in trained.scalars.items()
                               if k.startswith("loss/") or k.startswith("health/")}
        with open(done, "w") as f:
            json.dump(out, f, indent=1)
        print(variant, json.dumps(out), flush=True)


if __name__ == "__main__":
    app.run(main)
