"""Images/s of the whole trainer step (objective, checks, logging) on the synthetic set;
a benchmark, not a test.

    .venv/bin/python benchmarks/trainer_rate.py                # this checkout
    PYTHONPATH=/tmp/old:/tmp/old/export .venv/bin/python benchmarks/trainer_rate.py \
        --repo=/tmp/old                                         # another commit (git worktree)

Runs configs/lunet_synthetic.py (the demo: LuNet 64x32, P=8, K=4) for
``--steps`` steps and reports the rate between the first log step and the
last (so the one-off tracing is left out).
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

REPO = flags.DEFINE_string("repo", os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "checkout whose configs/ to use")
STEPS = flags.DEFINE_integer("steps", 60, "steps")
EVERY = flags.DEFINE_integer("log_every", 20, "log step (rate measured from it to the end)")
DATA = flags.DEFINE_string("data", os.path.join(tempfile.gettempdir(), "kreid_trainer_rate"),
                           "synthetic set folder (generated once)")


def main(argv):
    del argv
    from kreid.training.config import load_config_file
    from kreid.training.trainer import Trainer

    c = load_config_file(os.path.join(REPO.value, "configs", "lunet_synthetic.py"))
    c.dataset.root = DATA.value
    c.total_steps, c.log_every, c.checkpoint_every = STEPS.value, EVERY.value, 0
    c.histogram_every, c.final_eval.enabled = 10 ** 6, False
    work = tempfile.mkdtemp()
    Trainer(c, work, progress=False).run()
    lines = [json.loads(x) for x in open(os.path.join(work, "log.jsonl"))]
    batch = int(c.batch.p) * int(c.batch.k)
    (s0, r0), (s1, r1) = [(x["step"], x["images_per_second"]) for x in (lines[0], lines[-1])]
    rate = (s1 - s0) * batch / (s1 * batch / r1 - s0 * batch / r0)
    print(json.dumps({"code": sys.modules["kreid"].__file__, "steps": f"{s0}-{s1}",
                      "images_per_second": round(rate, 1)}))


if __name__ == "__main__":
    app.run(main)
