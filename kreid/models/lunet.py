"""LuNet (Hermans et al. 2017, supplement D, Table 6): a ResNet-v2 style net trained from scratch.

Built row by row from Table 6 (``TABLE6`` below):

* Conv 128 x 7 x 7 x 3 (stride 1: five 2x poolings take 128x64 to 4x2, and
  4 x 2 x 128 = 1024 is the input of "Linear 1024 x 512").
* Bottleneck Res-blocks ``n1, n2, n3``: "a 1x1 convolution from the number of
  input channels n1 to the number of intermediate channels n2, followed by a
  3x3 convolution keeping the number of channel constant, and finally another
  1x1 convolution going from n2 channels to n3 channels", pre-activation
  (BN -> leaky ReLU before each convolution, ResNet-v2), with a 1x1 projection
  shortcut where n1 != n3.
* MaxPool "pool 3x3, stride (2x2), padding (1x1)" after blocks 1, 4, 6, 9 and 11.
  The 1-pixel padding is symmetric as in the table; inference repeats the
  border row/column, which for a maximum is the same as padding with -inf
  and keeps the exported int8/ONNX graph free of infinities (training pads
  with -inf, which is faster: :class:`EdgePad2D`).
* The last Res-block, "512 x (3x3x512), 128 x (3x3x512)": two 3x3
  convolutions 512 -> 512 -> 128 (pre-activated), with a 1x1 projection
  shortcut 512 -> 128.
* After the last Res-block, BN -> leaky ReLU: not a row of Table 6, but the
  closing step of a ResNet-v2 ("LuNet follows the style of ResNet-v2", Sec.
  3.3: pre-activation units leave their sum un-normalised, and v2 normalises
  and activates it once at the end). Without it the flattened residual stream
  reaches the Linear layer un-normalised; measured here, a full-int8 TFLite
  export of a CUHK03-trained LuNet then kept a cosine of 0.50 to the float
  model (-9.8 mAP points) instead of 0.97. (256 parameters: 5.00 M either way.)
* Linear 1024 x 512, Batch-Norm, ReLU, Linear 512 x 128: "All ReLUs,
  including those in Res-blocks, are leaky by a factor of 0.3", so the head's
  too.
* "All convolutional weights are initialized following He et al., whereas we
  initialized the final Linear layers following Glorot et al."

5.00 M trainable parameters at 128x64 (5,001,408; convolutions with biases).

Other input sizes (the paper is silent; Table 1 trains LuNet on "images
downsampled by a factor of two", 64x32, without saying how Table 6 changes):
kreid keeps every row of Table 6 and flattens what the five poolings leave,
so the first Linear takes H/32 x W/32 x 128 features (each pooling rounds
up: ceil): 1024 at 128x64, **256 at 64x32** (2 x 1 x 128; the model then has
4.61 M parameters) and 4096 at 256x128. The alternatives were worse fits:
global pooling would discard the spatial layout the 1024-d Linear reads at
the paper's own size, and resizing or padding the 64x32 input back to
128x64 would not be "downsampled". :func:`flat_features` gives the number;
building at another size logs it.

Its batch norms and convolutions are :class:`~kreid.models.layers.BatchNorm`,
:class:`~kreid.models.layers.PointwiseConv2D` (1x1) and
:class:`~kreid.models.layers.Conv2D` (3x3, 7x7): Keras' layers with the same
maths and variables, whose training steps run faster on a CPU (fused kernel,
one matmul, the bias gradient as a plain sum; issue 14, measured in
BENCHMARKS.md); inference and export are Keras' own.
"""

from __future__ import annotations

import keras
from keras import layers

from kreid.models import register
from kreid.models.layers import BatchNorm, Conv2D, Dense, PointwiseConv2D

SLOPE = 0.3
# Table 6, row by row: ("conv", out, kernel) | ("res", n1, n2, n3) | ("pool",) |
# ("res_final", (512, 3, 512), (128, 3, 512)) | ("linear", out) | ("bn",) | ("lrelu",)
TABLE6 = (
    ("conv", 128, 7),
    ("res", 128, 32, 128),
    ("pool",),
    ("res", 128, 32, 128), ("res", 128, 32, 128), ("res", 128, 64, 256),
    ("pool",),
    ("res", 256, 64, 256), ("res", 256, 64, 256),
    ("pool",),
    ("res", 256, 64, 256), ("res", 256, 64, 256), ("res", 256, 128, 512),
    ("pool",),
    ("res", 512, 128, 512), ("res", 512, 128, 512),
    ("pool",),
    ("res_final", (512, 3, 512), (128, 3, 512)),
    ("linear", 512), ("bn",), ("lrelu",), ("linear", 128),
)


def _conv(filters, kernel, name):
    conv = PointwiseConv2D if kernel == 1 else Conv2D
    return conv(filters, kernel, padding="same", kernel_initializer="he_normal", name=name)


def _pre(x, name):
    """BN -> leaky ReLU 0.3 (the pre-activation of ResNet-v2)."""
    return layers.LeakyReLU(SLOPE, name=f"{name}_act")(
        BatchNorm(name=f"{name}_bn")(x))


@keras.saving.register_keras_serializable(package="kreid")
class EdgePad2D(layers.Layer):
    """Pad H and W by one pixel on every side for Table 6's max-pool: valid only before a
    maximum (training pads with -inf).

    Inference (and so every export) repeats the border row and column: for a maximum
    the same as -inf padding, with only slice/concat ops, so the exported int8/ONNX
    graphs hold no infinities. Training pads with -inf: one ``Pad`` op whose gradient
    is one slice, the same values and gradients after the max-pool. The border copies
    (two concatenations forward, their gradients backward) profiled at about 8% of the
    CPU time of LuNet's training step; with the max-pool, forward and backward, the ``Pad``
    takes a third to a half of their time (``benchmarks/lunet_ops.py``, issue 14).
    """

    def call(self, x, training=None):
        if training:
            return keras.ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]],
                                 constant_values=float("-inf"))
        y = keras.ops.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
        return keras.ops.concatenate([y[:, :, :1], y, y[:, :, -1:]], axis=2)

    def compute_output_shape(self, s):
        grow = lambda v: None if v is None else v + 2  # noqa: E731
        return (s[0], grow(s[1]), grow(s[2]), s[3])


def max_pool(x, name):
    """Table 6's MaxPool: pool 3x3, stride 2, padding 1 on every side."""
    return layers.MaxPooling2D(3, 2, padding="valid", name=name)(EdgePad2D(name=f"{name}_pad")(x))


def res_block(x, n1: int, n2: int, n3: int, name: str):
    """Pre-activation bottleneck block n1 -> 1x1 n2 -> 3x3 n2 -> 1x1 n3."""
    if x.shape[-1] != n1:
        raise ValueError(f"{name}: Table 6 expects {n1} input channels, got {x.shape[-1]}")
    pre = _pre(x, f"{name}_pre")
    shortcut = x if n1 == n3 else _conv(n3, 1, f"{name}_proj")(pre)
    y = _conv(n2, 1, f"{name}_conv1")(pre)
    y = _conv(n2, 3, f"{name}_conv2")(_pre(y, f"{name}_mid1"))
    y = _conv(n3, 1, f"{name}_conv3")(_pre(y, f"{name}_mid2"))
    return layers.Add(name=f"{name}_add")([shortcut, y])


def final_block(x, first, second, name: str = "reduce"):
    """The last Res-block: two 3x3 convolutions (512 x 3x3x512, 128 x 3x3x512), pre-activated,
    with a 1x1 projection shortcut to 128 channels."""
    pre = _pre(x, f"{name}_pre")
    shortcut = _conv(second[0], 1, f"{name}_proj")(pre)
    y = _conv(first[0], first[1], f"{name}_conv1")(pre)
    y = _conv(second[0], second[1], f"{name}_conv2")(_pre(y, f"{name}_mid"))
    return layers.Add(name=f"{name}_add")([shortcut, y])


def backbone(input_shape) -> keras.Model:
    """Table 6 up to the last Res-block, flattened (1024 values at 128x64)."""
    inputs = keras.Input(input_shape, name="images")
    x, blocks, pools = inputs, 0, 0
    for row in TABLE6:
        kind = row[0]
        if kind == "conv":
            x = _conv(row[1], row[2], "stem_conv")(x)
        elif kind == "res":
            blocks += 1
            x = res_block(x, *row[1:], name=f"block{blocks}")
        elif kind == "pool":
            pools += 1
            x = max_pool(x, f"pool{pools}")
        elif kind == "res_final":
            x = final_block(x, row[1], row[2])
            x = _pre(x, "final")            # ResNet-v2's closing BN -> activation
    return keras.Model(inputs, layers.Flatten(name="flatten")(x), name="backbone")


def flat_features(height: int, width: int) -> int:
    """The flattened feature the first Linear takes at an input of ``height`` x ``width``:
    five poolings (3x3, stride 2, padding 1: ceil(n / 2) each) of the 128-channel map."""
    for _ in range(5):
        height, width = -(-height // 2), -(-width // 2)
    return height * width * 128


@register("lunet", preprocessing="scale")
def lunet(input_shape=(128, 64, 3), embedding_dim: int = 128) -> keras.Model:
    """LuNet; at 128x64 the flattened feature is 1024-d as in Table 6, at other sizes
    :func:`flat_features` (the module docstring says why). ``embedding_dim`` replaces
    the last Linear's 128 outputs."""
    features = flat_features(*input_shape[:2])
    if features != 1024:
        import logging

        logging.getLogger(__name__).info(
            "LuNet at %dx%d: the first Linear takes %d features (Table 6's 1024 x 512 is "
            "at 128x64)", input_shape[0], input_shape[1], features)
    inputs = keras.Input(input_shape, name="images")
    x = backbone(input_shape)(inputs)
    x = Dense(512, kernel_initializer="glorot_uniform", name="fc1")(x)
    x = layers.LeakyReLU(SLOPE, name="fc1_act")(BatchNorm(name="fc1_bn")(x))
    x = Dense(embedding_dim, kernel_initializer="glorot_uniform", name="embedding")(x)
    return keras.Model(inputs, x, name="lunet")
