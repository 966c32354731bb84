"""Helper process for the distribution tests: loss and gradients of one global batch.

    python dist_worker.py single OUT.npz
    python dist_worker.py mirrored OUT.npz          (2 logical CPU devices)
    TF_CONFIG=... python dist_worker.py multi_worker OUT.npz

The global batch (16 images, 4 identities x 4, plus an AM0 head and soft batch
hard on the all-gathered embeddings) is the same in every mode; the test
compares the summed gradients with the single-device ones.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

mode, out_path = sys.argv[1], sys.argv[2]
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402

from kreid import models  # noqa: E402
from kreid.training.distribute import Replicas, make_strategy  # noqa: E402
from kreid.training.objective import Objective  # noqa: E402

strategy = make_strategy({"single": "default", "mirrored": "mirrored",
                          "multi_worker": "multi_worker"}[mode],
                         ["/cpu:0", "/cpu:1"] if mode == "mirrored" else None)
replicas = Replicas(strategy)
rng = np.random.default_rng(0)
images = rng.random((16, 64, 32, 3)).astype(np.float32)
labels = np.repeat(np.arange(4), 4)
with replicas.scope():
    keras.utils.set_random_seed(0)
    model = models.build("mobilenet_edge", (64, 32, 3), 32)
    if replicas.num > 1:
        for layer in model._flatten_layers():
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    objective = Objective({"am_softmax": {"weight": 1.0}, "batch_hard": {"weight": 0.5}},
                          num_classes=4, embedding_dim=32)
    objective.build()
    model(tf.zeros((1, 64, 32, 3)))
variables = model.trainable_variables + objective.trainable_variables


def make():
    return tf.data.Dataset.from_tensors({"images": images, "labels": labels}).repeat()


def replica_fn(batch):
    with tf.GradientTape() as tape:
        emb = model(batch["images"], training=True)
        loss, _ = objective(emb, batch, replicas.gather, replicas.num, tf.constant([0, 0],
                                                                                  tf.int64))
    return [loss] + tape.gradient(loss, variables)


@tf.function
def step(iterator):
    out = replicas.run(replica_fn, next(iterator))
    if replicas.num == 1:
        return out
    return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in out]


result = [np.asarray(v) for v in step(iter(replicas.distribute(make, 16)))]
if replicas.is_chief:
    np.savez(out_path, *result)
print(f"{mode}: replicas={replicas.num} loss={float(result[0]):.6f}")
