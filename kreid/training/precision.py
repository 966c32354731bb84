"""Training precision: ``config.precision`` is ``float32`` (default), ``mixed_bfloat16``
or ``auto`` (:func:`resolve`: bfloat16 where the hardware runs it natively, else float32).

``mixed_bfloat16`` is Keras' mixed policy: the model's layers compute in
bfloat16 and keep float32 variables (so checkpoints are the same either way);
the heads, the losses and the optimizer stay float32, and the embeddings are
cast to float32 before any loss sees them. bfloat16 has float32's exponent
range, so no loss scaling is needed (float16 would need it; kreid does not
offer it). Hardware with bfloat16 arithmetic runs it natively: CPUs with
AVX512_BF16 or AMX (oneDNN), GPUs from compute capability 8.0 (Ampere); on
other hardware it is emulated and slower, which :func:`check` warns about.
What it buys and costs on this machine is measured in BENCHMARKS.md
(``benchmarks/lunet_step.py --bf16``, and a demo run for the accuracy).

After training the model is rebuilt in float32 with the trained weights
(:func:`float32_copy`, a clone of its layers): ``embedding.keras``, the final
evaluation and every export see a float32 model whatever the training precision.
"""

from __future__ import annotations

import contextlib
import logging

from kreid.errors import ConfigValueError

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_bfloat16", "auto")


def validate(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigValueError(f"config.precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {precision!r}")
    return precision


def native_bfloat16() -> str | None:
    """What runs bfloat16 natively here (a GPU's name, or the CPU flag), or None."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (8, 0):
            return f"{gpu.name} (compute capability {capability[0]}.{capability[1]})"
    if gpus:        # training runs on the GPU: a bfloat16 CPU does not make it native
        return None
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return None
    found = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]
    return f"CPU {found[0]}" if found else None


def resolve(precision: str) -> str:
    """The precision to train in: ``auto`` becomes ``mixed_bfloat16`` when
    :func:`native_bfloat16` finds the hardware for it and ``float32`` otherwise (so a
    machine without bfloat16 arithmetic never gets the slower emulated path); the
    other values are returned as they are. ``make demo`` trains with ``auto``. With a
    GPU it is decided from the GPUs alone. Each process decides on its own hardware (give
    multi-worker runs on mixed hosts an explicit value); a resumed run decides again, which
    is safe because the variables and checkpoints are float32 either way."""
    if validate(precision) != "auto":
        return precision
    found = native_bfloat16()
    chosen = "mixed_bfloat16" if found else "float32"
    log.info("config.precision='auto': %s (%s)", chosen,
             f"native bfloat16 on {found}" if found else "no bfloat16 hardware found")
    return chosen


def check(precision: str) -> None:
    """Validate ``precision``; warn when bfloat16 would be emulated on this hardware."""
    if validate(precision) == "mixed_bfloat16" and native_bfloat16() is None:
        log.warning("config.precision='mixed_bfloat16': no bfloat16 hardware found (a CPU "
                    "with AVX512_BF16/AMX or a GPU of compute capability >= 8.0); it will be "
                    "emulated and is likely slower than float32")


def check_biases(model) -> list[str]:
    """Warn when ``model`` computes in bfloat16 on a CPU with Keras' own convolution or
    ``Dense`` layers whose bias gradient matters, and return their names: TensorFlow's CPU
    kernel for a bias gradient (``BiasAddGrad``) accumulates in bfloat16, so a bias behind
    a large activation gets a gradient that stops growing at a few hundred (256 where the
    sum is 32,822: BENCHMARKS.md, issue 14). kreid's own layers (``kreid.models.layers``)
    sum it in float32, and every ResNet-50 kreid writes uses them.

    A bias read only by batch norms that train is not named: a per-channel constant
    leaves a training batch norm's output unchanged, so the bias gradient is zero in exact
    arithmetic (what bfloat16 computes for it is rounding noise, which the norm's moving
    mean absorbs). That covers the 53 convolution biases of Keras' prebuilt ResNet-50 in
    TriNet. What counts as such a read is read off ``model``'s own graph
    (:func:`_training_norm_reads`); any doubt names the layer. Not checked on GPUs, whose
    kernel accumulates 16-bit types in float32 (no GPU here to measure it)."""
    import keras
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return []
    from kreid.models import all_layers
    from kreid.models.layers import Conv2D, Dense

    kinds = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
             keras.layers.Conv2DTranspose, keras.layers.DepthwiseConv2D,
             keras.layers.SeparableConv2D, keras.layers.Dense)
    reads: dict[int, list[bool]] = {}
    _training_norm_reads(model, False, reads)
    names = [layer.name for layer in all_layers(model)
             if isinstance(layer, kinds) and not isinstance(layer, (Conv2D, Dense))
             and getattr(layer, "use_bias", False) and layer.compute_dtype == "bfloat16"
             and not (getattr(layer, "data_format", "channels_last") == "channels_last"
                      and all(reads.get(id(layer)) or [False]))]
    if names:
        log.warning("mixed_bfloat16 on a CPU: %d Keras layers with a bias (%s%s) get their "
                    "bias gradients summed in bfloat16 by TensorFlow, which loses most of "
                    "them for large activations; train this model in float32 "
                    "(config.precision='float32') for exact bias gradients", len(names),
                    ", ".join(names[:3]), ", ..." if len(names) > 3 else "")
    return names


def _training_norm_reads(model, frozen: bool, reads: dict) -> None:
    """For each layer of ``model``'s functional graph (nested functional and sequential
    models included), one entry in ``reads[id(layer)]`` per read of its output: True where
    the reader is a trainable ``BatchNormalization`` over the last axis that runs in
    training mode (not called with ``training=False``, nor inside a model called so),
    False for any other reader and for a model output. A layer used in other graphs
    counts only its reads in this one; a model whose graph cannot be read adds nothing,
    so its layers are named."""
    import keras

    graph = getattr(model, "_functional", None) or model     # Sequential keeps one inside
    by_depth = getattr(graph, "_nodes_by_depth", None)
    if by_depth is None:
        return
    for node in (n for nodes in by_depth.values() for n in nodes):
        reader = node.operation
        kwargs = node.arguments.kwargs if node.arguments is not None else {}
        off = frozen or kwargs.get("training") is False
        for tensor in node.input_tensors:
            norm = (isinstance(reader, keras.layers.BatchNormalization) and reader.trainable
                    and not off and reader.axis in (-1, len(tensor.shape) - 1))
            reads.setdefault(id(tensor._keras_history.operation), []).append(norm)
        if isinstance(reader, keras.Model):
            _training_norm_reads(reader, off, reads)
    for tensor in keras.tree.flatten(graph.outputs):
        reads.setdefault(id(tensor._keras_history.operation), []).append(False)


@contextlib.contextmanager
def policy(precision: str):
    """Layers built inside use ``precision``'s Keras dtype policy (the global policy is
    restored on exit, so heads and later models stay float32)."""
    import keras

    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(resolve(precision))
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def float32_copy(model):
    """``model`` itself if it computes in float32, else a float32 clone holding its weights
    (layer by layer from the layers' configs: nothing is rebuilt from the model's config,
    so no pretrained file is read again)."""
    import keras

    from kreid.models import all_layers

    if all(layer.compute_dtype == "float32" for layer in all_layers(model)):
        return model

    def as_float32(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=as_float32, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
