"""Adapt a trained model to unlabelled target cameras (kreid.adaptation.rounds).

    python bin/adapt.py --config=configs/cuhk03_mobilenetv2_imagenet.py \
        --workdir=runs/adapt_mycams --config.init_from=runs/source/embedding.keras \
        --config.adapt.target.name=unlabelled --config.adapt.target.root=/data/mycams

The config is the source model's (its model, input size, batch and precision);
``config.adapt`` sets the rounds (kreid/training/config.py). A workdir that
holds finished rounds is resumed; the adapted model is the last round's
``embedding.keras``, printed at the end.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

CONFIG = config_flags.DEFINE_config_file("config", None, "the source model's config (configs/*.py)",
                                         lock_config=True)
WORKDIR = flags.DEFINE_string("workdir", None, "output folder (one sub-folder per round)",
                              required=True)


def main(argv):
    del argv
    if CONFIG.value is None:
        raise app.UsageError("--config is required (the config the source model trained with)")
    from kreid.adaptation.rounds import adapt

    summary = adapt(CONFIG.value, WORKDIR.value)
    logging.info("done: %s", WORKDIR.value)
    print(f"adapted model: {summary['model']}")


if __name__ == "__main__":
    from kreid.cli import run
    run(main, config_flag="config")
