"""Train a ReID model from a config file.

    python bin/train.py --config=configs/lunet_market1501.py --workdir=runs/lunet \
        --config.dataset.root=/data/Market-1501-v15.09.15 --config.batch.p=18

A workdir that holds checkpoints is resumed from the newest (``--noresume``
refuses to reuse it). Multi-worker: set TF_CONFIG on every host and pass
``--config.distribution.strategy=multi_worker``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (configs/*.py)",
                                         lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "output folder", required=True)
RESUME = flags.DEFINE_bool("resume", True, "resume from the newest checkpoint in --workdir")
LOGICAL_CPUS = flags.DEFINE_integer("logical_cpus", 0,
                                    "split the CPU into this many logical devices (testing "
                                    "MirroredStrategy without GPUs)")


def main(argv):
    del argv
    if CONFIG.value is None:
        raise app.UsageError("--config is required (e.g. --config=configs/lunet_synthetic.py)")
    from kreid.training.trainer import train

    train(CONFIG.value, WORKDIR.value, resume=RESUME.value, logical_cpus=LOGICAL_CPUS.value)
    logging.info("done: %s", WORKDIR.value)


if __name__ == "__main__":
    from kreid.cli import run

    run(main, config_flag="config")
