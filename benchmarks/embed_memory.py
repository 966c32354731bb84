"""Embedding memory and speed: peak RSS and images/s per view; a benchmark, not a test.

    .venv/bin/python benchmarks/embed_memory.py --tta=five_flip --num_images=23100
    .venv/bin/python benchmarks/embed_memory.py --tta=none --num_images=360 --legacy

Embeds ``num_images`` records of a synthetic set (its query + gallery images,
cycled to the requested count: Market-1501's 3,368 + 19,732 = 23,100) with a
randomly initialised model (LuNet 128x64 by default) through
:func:`kreid.evaluation.embed.embed_records`. ``--legacy`` runs the code
before #12 instead: batches of 64 *records* x views in one eager model call.
Run one configuration per process: peak RSS (``ru_maxrss``) is per process.
"""

import json
import os
import resource
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

MODEL = flags.DEFINE_string("model", "lunet", "kreid.models name")
SIZE = flags.DEFINE_list("size", ["128", "64"], "input H,W")
TTA = flags.DEFINE_enum("tta", "five_flip", ["none", "center", "center_flip", "five", "five_flip"],
                        "test-time augmentation")
NUM = flags.DEFINE_integer("num_images", 2000, "records to embed")
BATCH = flags.DEFINE_integer("batch_size", 64, "image budget per model call")
LEGACY = flags.DEFINE_bool("legacy", False, "the pre-#12 path (records x views, eager)")
DATA = flags.DEFINE_string("data", os.path.join(tempfile.gettempdir(), "kreid_bench_synthetic"),
                           "synthetic set folder (generated once)")


def _legacy_embed(model, records, tta, size):
    """What embed_records did before #12: 64 records x all views, one eager call."""
    import numpy as np

    from kreid.data import pipeline

    dataset = pipeline.eval_dataset(records, size, tta=tta, preprocessing="scale", batch_size=64)
    out = []
    for views in pipeline.iterate(dataset, records):
        views = np.asarray(views)
        b, v = views.shape[:2]
        emb = np.asarray(model(views.reshape(b * v, *views.shape[2:]), training=False))
        out.append(emb.reshape(b, v, -1).mean(1))
    return np.concatenate(out)


def main(argv):
    del argv
    import keras

    from kreid import models
    from kreid.data import augment, datasets, synthetic
    from kreid.evaluation.embed import KerasEmbedder, embed_records

    synthetic.generate(DATA.value)
    ds = datasets.load("market1501", DATA.value)
    pool = list(ds.query) + list(ds.gallery)
    records = [pool[i % len(pool)] for i in range(NUM.value)]
    size = (int(SIZE.value[0]), int(SIZE.value[1]))
    keras.utils.set_random_seed(0)
    model = models.build(MODEL.value, (*size, 3))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    start = time.perf_counter()
    if LEGACY.value:
        _legacy_embed(model, records, TTA.value, size)
    else:
        embed_records(KerasEmbedder(model, "scale"), records, TTA.value, BATCH.value,
                      progress=False)
    seconds = time.perf_counter() - start
    views = NUM.value * augment.num_views(TTA.value)
    print(json.dumps({
        "model": MODEL.value, "size": list(size), "tta": TTA.value, "images": NUM.value,
        "views": views, "legacy": LEGACY.value, "batch_size": BATCH.value,
        "seconds": round(seconds, 1), "views_per_second": round(views / seconds, 1),
        "peak_rss_gb_before_embedding": round(rss_before, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)}))


if __name__ == "__main__":
    app.run(main)
