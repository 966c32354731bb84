"""The two training-path choices of issue 14's second profile, op by op in isolation: a
benchmark, not a test.

    .venv/bin/python benchmarks/lunet_ops.py

(1) A convolution's forward pass + weight and bias gradients (input gradient too,
except for the stem) with TensorFlow's bias gradient (oneDNN fuses it into
``Conv2DBackpropFilterWithBias``) against kreid's (``kreid.models.layers.Conv2D``: a
``reduce_sum`` the pass leaves alone), at LuNet's shapes for P=18 K=4. (2) Table 6's
max-pool (pool 3x3, stride 2, padding 1), forward + backward, with the padding done by
border copies (inference), a -inf ``Pad`` (training), ``MirrorPad``, and the MaxPool op's
own explicit padding. (3) LuNet's 1x1 convolutions as inference matrix products
(GFLOP/s). Best of 3 timings of 5, milliseconds.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402


def best_ms(fn, reps=5, trials=3) -> float:
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return round(1000 * best, 1)


def conv_rows():
    import tensorflow as tf

    from kreid.models.layers import _bias_add_summed

    for shape, k, c_out, input_grad in [((72, 128, 64, 3), 7, 128, False),
                                        ((72, 128, 64, 32), 3, 32, True),
                                        ((72, 64, 32, 64), 3, 64, True),
                                        ((72, 16, 8, 512), 3, 512, True)]:
        x = tf.random.normal(shape)
        w = tf.Variable(tf.random.normal((k, k, shape[-1], c_out)) * 0.05)
        b = tf.Variable(tf.zeros(c_out))
        times = {}
        for name, add in (("tensorflow", tf.nn.bias_add), ("kreid", _bias_add_summed)):
            @tf.function
            def step(add=add):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    y = add(tf.nn.conv2d(x, w, 1, "SAME"), b)
                    loss = tf.reduce_sum(y * y)
                grads = tape.gradient(loss, [w, b] + ([x] if input_grad else []))
                return [tf.reduce_sum(g) for g in grads]
            times[name] = best_ms(lambda: [g.numpy() for g in step()])
        print(f"conv {k}x{k} {shape} -> {c_out}: bias gradient by TensorFlow "
              f"{times['tensorflow']} ms, kreid {times['kreid']} ms")


def pool_rows():
    import tensorflow as tf

    from kreid.models.lunet import EdgePad2D

    pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
    ways = {
        "border copies (inference)": lambda x: tf.nn.max_pool2d(EdgePad2D()(x), 3, 2, "VALID"),
        "-inf Pad (training)": lambda x: tf.nn.max_pool2d(EdgePad2D()(x, training=True), 3, 2,
                                                          "VALID"),
        "MirrorPad": lambda x: tf.nn.max_pool2d(tf.pad(x, pad, "SYMMETRIC"), 3, 2, "VALID"),
        "MaxPool explicit padding": lambda x: tf.nn.max_pool2d(x, 3, 2, pad),
    }
    for shape in [(72, 128, 64, 128), (72, 64, 32, 256), (72, 32, 16, 256)]:
        x = tf.random.normal(shape)
        row = {}
        for name, pool in ways.items():
            @tf.function
            def step(pool=pool):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    loss = tf.reduce_sum(pool(x))
                return tf.reduce_sum(tape.gradient(loss, x))
            row[name] = best_ms(lambda: step().numpy())
        print(f"pool {shape}: " + ", ".join(f"{k} {v} ms" for k, v in row.items()))


def pointwise_rows():
    """LuNet's 1x1 convolutions in inference, as the matrix products they are: GFLOP/s."""
    import tensorflow as tf

    for pixels, c_in, c_out in [(128 * 64, 128, 32), (128 * 64, 32, 128), (64 * 32, 128, 256),
                                (64 * 32, 64, 256), (16 * 8, 512, 128)]:
        x = tf.random.normal((72 * pixels, c_in))
        w = tf.random.normal((c_in, c_out))
        product = tf.function(lambda x=x, w=w: tf.matmul(x, w))
        ms = best_ms(lambda: product().numpy())
        print(f"pointwise {c_in} -> {c_out} over 72 x {pixels} pixels: {ms} ms, "
              f"{2 * 72 * pixels * c_in * c_out / ms / 1e6:.0f} GFLOP/s")


def main(argv):
    del argv
    conv_rows()
    pool_rows()
    pointwise_rows()


if __name__ == "__main__":
    app.run(main)
