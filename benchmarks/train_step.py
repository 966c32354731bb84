"""Training-step throughput of the registered backbones on this CPU; a benchmark, not a test.

    .venv/bin/python benchmarks/train_step.py
    .venv/bin/python benchmarks/train_step.py --models=resnet_edge,resnet_edge_w48

Times one Adam step (forward, backward, update) of each model on a random
batch held in memory (no input pipeline), after warm-up steps, so the figure
is what the model itself costs. ``resnet_edge_w48`` / ``_w64`` are
``resnet_edge`` with widths 48-96-192-384 / 64-128-256-512.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

MODELS = flags.DEFINE_list("models", ["mobilenet_edge", "resnet_edge", "resnet_edge_w48",
                                      "resnet_edge_w64", "lunet"], "models to time")
SIZE = flags.DEFINE_list("size", ["128", "64"], "input height,width")
BATCH = flags.DEFINE_integer("batch", 128, "images per step (P x K)")
STEPS = flags.DEFINE_integer("steps", 8, "steps timed per model")

VARIANTS = {"resnet_edge_w16": ("resnet_edge", {"widths": (16, 32, 64, 128)}),
            "resnet_edge_w24": ("resnet_edge", {"widths": (24, 48, 96, 192)}),
            "resnet_edge_w48": ("resnet_edge", {"widths": (48, 96, 192, 384)}),
            "resnet_edge_w64": ("resnet_edge", {"widths": (64, 128, 256, 512)}),
            "mobilenet_v2_ls1": ("mobilenet_v2", {"last_stride": 1})}


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from kreid import models

    h, w = (int(v) for v in SIZE.value)
    images = tf.random.uniform((BATCH.value, h, w, 3))
    print(f"cores: {os.cpu_count()}, tf {tf.__version__}, batch {BATCH.value}, {h}x{w}")
    for name in MODELS.value:
        base, kwargs = VARIANTS.get(name, (name, {}))
        model = models.build(base, (h, w, 3), **kwargs)
        optimizer = keras.optimizers.Adam(1e-3)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(images, training=True)))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        for _ in range(3):
            step()
        start = time.perf_counter()
        for _ in range(STEPS.value):
            step().numpy()
        rate = STEPS.value * BATCH.value / (time.perf_counter() - start)
        print(f"{name:18s} {model.count_params() / 1e6:6.2f} M parameters {rate:7.1f} images/s",
              flush=True)


if __name__ == "__main__":
    app.run(main)
