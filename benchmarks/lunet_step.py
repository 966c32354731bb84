"""LuNet training step against this CPU's FLOP limit and against PyTorch (issue 14); a
benchmark, not a test.

    .venv/bin/python benchmarks/lunet_step.py --torch_python=/tmp/torchenv/bin/python

In one run: (1) the FLOP limit, an fp32 2048^3 matmul in TensorFlow; (2) kreid's
LuNet (Table 6) training step at 128x64, batch hard with the soft margin, Adam,
P=18 K=4, compiled, on a random batch in memory; (3) the same network, loss and
optimizer in PyTorch (``lunet_torch.py``, run by ``--torch_python``: torch is
never a kreid dependency; install it in its own virtualenv, e.g.
``python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0``).
FLOPs per training image are counted from the layers (2 per multiply-add;
backward = 2x forward), so the percentage is of useful work only.
"""

import json
import os
import re
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

TORCH_PYTHON = flags.DEFINE_string("torch_python", None,
                                   "python of an environment with torch (skipped if unset)")
STEPS = flags.DEFINE_integer("steps", 10, "timed steps")
P = flags.DEFINE_integer("p", 18, "identities per batch")
K = flags.DEFINE_integer("k", 4, "images per identity")
SIZE = flags.DEFINE_list("size", ["128", "64"], "input height,width")
MIXED = flags.DEFINE_bool("bf16", False, "Keras mixed_bfloat16 policy")
PROFILE = flags.DEFINE_string("profile", None, "also trace 5 steps with the TensorFlow profiler "
                              "into this folder and print the time per op type")
JIT = flags.DEFINE_bool("jit", False, "compile the step with XLA (jit_compile=True)")
INTEROP = flags.DEFINE_integer("interop", 0, "inter-op threads (0: TensorFlow's default)")
TOP = flags.DEFINE_integer("top", 25, "op types listed by --profile")


def forward_macs(model) -> int:
    """Multiply-adds of one forward pass of one image (convolutions and dense layers)."""
    import keras

    from kreid.models.weights import all_layers

    macs = 0
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            macs += h * w * kh * kw * layer.input.shape[-1] * c_out
        elif isinstance(layer, keras.layers.Dense):
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(macs)


def gemm_gflops(n: int = 2048, reps: int = 10, trials: int = 5, dtype: str = "float32") -> float:
    """The best of ``trials`` timings of ``reps`` n^3 matmuls in ``dtype`` (the machine's
    limit: single timings vary by a third here with clock and thread warm-up)."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    matmul = tf.function(lambda: tf.matmul(a, b))
    matmul().numpy()
    best = 0.0
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(reps):
            matmul().numpy()
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def keras_rate(h: int, w: int, batch: int) -> float:
    import keras
    import tensorflow as tf

    from kreid import models
    from kreid.losses import batch_hard

    from kreid.training.precision import policy

    with policy("mixed_bfloat16" if MIXED.value else "float32"):   # as the trainer builds it
        model = models.build("lunet", (h, w, 3))
    optimizer = keras.optimizers.Adam(3e-4)
    images = tf.random.uniform((batch, h, w, 3))
    labels = tf.repeat(tf.range(P.value), K.value)

    @tf.function(jit_compile=JIT.value)
    def step():
        with tf.GradientTape() as tape:
            emb = tf.cast(model(images, training=True), tf.float32)
            loss = batch_hard(emb, labels, margin="soft")
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    for _ in range(3):
        step().numpy()
    start = time.perf_counter()
    for _ in range(STEPS.value):
        step().numpy()
    rate = STEPS.value * batch / (time.perf_counter() - start)
    if PROFILE.value:
        tf.profiler.experimental.start(PROFILE.value)
        for _ in range(5):
            step().numpy()
        tf.profiler.experimental.stop()
    return rate, forward_macs(model)


OP_EVENT = re.compile(r"^[^:\s]+:[A-Za-z_]\w*$")


def op_times(logdir: str) -> list[tuple[str, float, int]]:
    """(op type, milliseconds per step, op count per step) from the newest trace in ``logdir``,
    summed over the host threads (so with 2 threads busy the total is about 2x wall time)."""
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = max(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
               key=os.path.getmtime)
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if not OP_EVENT.match(name):   # TF ops are "name:Type"; not the wrappers
                    continue                   # ("EagerLocalExecute: __inference_..." etc.)
                kind = name.rsplit(":", 1)[1]
                total[kind] = total.get(kind, 0.0) + event.duration_ps / 1e9
                count[kind] = count.get(kind, 0) + 1
    return sorted(((k, v / 5, count[k] // 5) for k, v in total.items()), key=lambda r: -r[1])


def main(argv):
    del argv
    import tensorflow as tf

    if INTEROP.value:
        tf.config.threading.set_inter_op_parallelism_threads(INTEROP.value)
    h, w = (int(v) for v in SIZE.value)
    batch = P.value * K.value
    limit = gemm_gflops()
    rate, macs = keras_rate(h, w, batch)
    flop_per_image = 3 * 2 * macs                     # forward + backward (2x forward)
    ceiling = limit * 1e9 / flop_per_image
    out = {"cores": os.cpu_count(), "tf": tf.__version__, "gemm_gflops": round(limit, 1),
           "forward_gmac_per_image": round(macs / 1e9, 3),
           "train_gflop_per_image": round(flop_per_image / 1e9, 2),
           "ceiling_img_s": round(ceiling, 1), "keras_img_s": round(rate, 1),
           "keras_pct_of_limit": round(100 * rate / ceiling, 1), "bf16": MIXED.value,
           "jit": JIT.value, "interop": INTEROP.value}
    if MIXED.value:                # bfloat16 arithmetic has its own, higher limit
        bf16_limit = gemm_gflops(dtype="bfloat16")
        out.update({"gemm_gflops_bf16": round(bf16_limit, 1),
                    "ceiling_img_s_bf16": round(bf16_limit * 1e9 / flop_per_image, 1),
                    "keras_pct_of_bf16_limit": round(
                        100 * rate / (bf16_limit * 1e9 / flop_per_image), 1)})
    if TORCH_PYTHON.value:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lunet_torch.py")
        done = subprocess.run([TORCH_PYTHON.value, script, str(h), str(w), str(P.value),
                               str(K.value), str(STEPS.value), "bf16" if MIXED.value else "fp32"],
                              capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{script} failed: {done.stderr[-800:]}")
        torch = json.loads(done.stdout.strip().splitlines()[-1])
        out.update({"torch": torch["version"], "torch_img_s": round(torch["img_s"], 1),
                    "torch_params": torch["params"],
                    "keras_over_torch": round(rate / torch["img_s"], 2)})
    print(json.dumps(out))
    if PROFILE.value:
        rows = op_times(PROFILE.value)
        busy = sum(ms for _, ms, _ in rows)
        print(f"op time per step (host threads summed): {busy:.0f} ms; "
              f"wall per step {1000 * batch / rate:.0f} ms")
        for kind, ms, n in rows[:TOP.value]:
            print(f"  {kind:32s} {ms:8.1f} ms {100 * ms / busy:5.1f}%  x{n}")


if __name__ == "__main__":
    app.run(main)
