"""Images/s of the whole trainer step (objective, checks, logging); a benchmark, not a test.

    .venv/bin/python benchmarks/trainer_rate.py                # the demo config, this checkout
    PYTHONPATH=/tmp/old:/tmp/old/export .venv/bin/python benchmarks/trainer_rate.py \
        --repo=/tmp/old                                         # another commit (git worktree)
    .venv/bin/python benchmarks/trainer_rate.py --config=configs/cuhk03_lunet_cpu.py \
        --root=../shared/data/cuhk03_labeled --image_size=128,64 --pk=18,4   # real images
    .venv/bin/python benchmarks/trainer_rate.py --config=configs/cuhk03_lunet_cpu.py \
        --root=../shared/data/cuhk03_labeled --image_size=128,64 --pk=18,4 --in_memory

Runs a config (by default ``configs/lunet_synthetic.py``, the demo: LuNet 64x32,
P=8, K=4, on the synthetic set) for ``--steps`` steps and reports the rate
between the first log step and the last (so the one-off tracing is left out).
``--in_memory`` (one device) feeds the trainer its first batch over and over from memory
(``cache().repeat()``): the same step without reading, decoding or augmenting,
so the two runs give the input pipeline's cost to end-to-end training.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

REPO = flags.DEFINE_string("repo", os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "checkout whose configs/ to use")
CONFIG = flags.DEFINE_string("config", "configs/lunet_synthetic.py",
                             "config file, relative to --repo")
ROOT = flags.DEFINE_string("root", os.path.join(tempfile.gettempdir(), "kreid_trainer_rate"),
                           "dataset folder of --config's dataset (the default is for the "
                           "synthetic set, generated there once)")
STEPS = flags.DEFINE_integer("steps", 60, "steps")
EVERY = flags.DEFINE_integer("log_every", 20, "log step (rate measured from it to the end)")
SIZE = flags.DEFINE_list("image_size", None, "H,W (default: the config's)")
PK = flags.DEFINE_list("pk", None, "P,K (default: the config's)")
IN_MEMORY = flags.DEFINE_bool("in_memory", False, "repeat the first batch from memory")


def main(argv):
    del argv
    from kreid.training.config import load_config_file
    from kreid.training.trainer import Trainer

    class InMemoryTrainer(Trainer):
        def _dataset(self, *args, **kwargs):      # any commit's signature (--repo)
            return super()._dataset(*args, **kwargs).take(1).cache().repeat()

    c = load_config_file(os.path.join(REPO.value, CONFIG.value))
    c.dataset.root = ROOT.value
    if SIZE.value:
        c.image_size = tuple(int(v) for v in SIZE.value)
    if PK.value:
        c.batch.p, c.batch.k = (int(v) for v in PK.value)
    c.total_steps, c.log_every, c.checkpoint_every = STEPS.value, EVERY.value, 0
    if "t1" in c.schedule and c.schedule.t1 > STEPS.value:   # the decay within the steps run
        c.schedule.t0 = max(1, c.schedule.t0 * STEPS.value // c.schedule.t1)
        c.schedule.t1 = STEPS.value
    c.stages, c.histogram_every, c.final_eval.enabled = [], 10 ** 6, False
    with tempfile.TemporaryDirectory(prefix="kreid_trainer_rate_run_",
                                     ignore_cleanup_errors=True) as work:
        (InMemoryTrainer if IN_MEMORY.value else Trainer)(c, work, progress=False).run()
        lines = [json.loads(x) for x in open(os.path.join(work, "log.jsonl"))]
    batch = int(c.batch.p) * int(c.batch.k)
    (s0, r0), (s1, r1) = [(x["step"], x["images_per_second"]) for x in (lines[0], lines[-1])]
    rate = (s1 - s0) * batch / (s1 * batch / r1 - s0 * batch / r0)
    print(json.dumps({"code": sys.modules["kreid"].__file__, "config": CONFIG.value,
                      "in_memory": IN_MEMORY.value, "steps": f"{s0}-{s1}",
                      "images_per_second": round(rate, 1)}))


if __name__ == "__main__":
    app.run(main)
