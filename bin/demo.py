"""Run the main job end to end on the embedded synthetic dataset."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.DEFINE_string("workdir", "demo_out", "where data, models and reports go")
SEED = flags.DEFINE_integer("seed", 0, "random seed")


def main(argv):
    del argv
    from kreid import demo

    demo.run(FLAGS.value, seed=SEED.value)


if __name__ == "__main__":
    app.run(main)
