"""Training-pipeline throughput (images/s) on real data; a benchmark, not a test.

    .venv/bin/python benchmarks/pipeline.py --root ../shared/data/cuhk03_labeled

Measures the PK tf.data pipeline (read, decode, paper augmentation, batch,
prefetch) at 128x64 and 256x128 with this machine's cores, after a warm-up.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

ROOT = flags.DEFINE_string("root", "../shared/data/cuhk03_labeled", "CUHK03 folder layout")
STEPS = flags.DEFINE_integer("steps", 60, "batches timed per size")
P = flags.DEFINE_integer("p", 32, "identities per batch")
K = flags.DEFINE_integer("k", 4, "images per identity")
EXTRAS = flags.DEFINE_bool("extras", False, "also random erasing + colour jitter + padding")


def main(argv):
    del argv
    import tensorflow as tf

    from kreid.data import augment, datasets, pipeline

    ds = datasets.load("cuhk03", ROOT.value)
    config = augment.AugmentConfig(erasing_prob=0.5, jitter=0.3, padding=8) \
        if EXTRAS.value else augment.AugmentConfig()
    print(f"cores: {os.cpu_count()}, tf {tf.__version__}, P={P.value}, K={K.value}, "
          f"extras={EXTRAS.value}")
    for size in ((128, 64), (256, 128)):
        it = iter(pipeline.train_dataset(ds.train, P.value, K.value, size, augment=config))
        for _ in range(5):
            next(it)
        start = time.perf_counter()
        for _ in range(STEPS.value):
            next(it)
        rate = STEPS.value * P.value * K.value / (time.perf_counter() - start)
        print(f"{size[0]}x{size[1]}: {rate:7.0f} images/s")


if __name__ == "__main__":
    app.run(main)
