"""LuNet (Hermans et al. 2017, supplement Table 6): a ResNet-v2 style net trained from scratch.

Pre-activation bottleneck residual blocks (BN -> leaky ReLU 0.3 -> 1x1 ->
BN -> leaky ReLU -> 3x3 -> BN -> leaky ReLU -> 1x1, projection shortcut when
the width changes), 3x3/2 max-pooling instead of strided convolutions (five
times: 128x64 -> 4x2), a final channel-reducing res-block to 128 channels
(4 x 2 x 128 = 1024 values), then Linear 1024 -> 512, BN, ReLU, Linear
512 -> 128. He initialisation for convolutions, Glorot for the final linear
layers. 5.00 M trainable parameters at 128x64 input.

Block list: Table 6 could not be consulted verbatim while writing this; the
list below follows its structure (widths 128/256/512 with bottlenecks of a
quarter, five max-pools, the final reducing block) and reproduces its
parameter count (checked by ``tests/models/test_models.py``).
"""

from __future__ import annotations

import keras
from keras import layers

from kreid.models import register

SLOPE = 0.3
# (output channels, bottleneck channels) per res-block; "pool" = 3x3/2 max-pool.
BLOCKS = ((128, 32), (128, 32), "pool",
          (128, 32), (256, 64), "pool",
          (256, 64), (256, 64), "pool",
          (256, 64), (256, 64), (512, 128), "pool",
          (512, 128), (512, 128), (512, 128), "pool")
FINAL_BLOCK = (128, 512)


def _conv(filters, kernel, name):
    return layers.Conv2D(filters, kernel, padding="same", kernel_initializer="he_normal",
                         name=name)


def res_block(x, out_channels: int, bottleneck: int, name: str):
    """Pre-activation bottleneck block (He et al. 2016, identity mappings)."""
    pre = layers.LeakyReLU(SLOPE, name=f"{name}_act0")(
        layers.BatchNormalization(name=f"{name}_bn0")(x))
    shortcut = x if x.shape[-1] == out_channels else _conv(out_channels, 1, f"{name}_proj")(pre)
    y = _conv(bottleneck, 1, f"{name}_conv1")(pre)
    y = layers.LeakyReLU(SLOPE, name=f"{name}_act1")(layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = _conv(bottleneck, 3, f"{name}_conv2")(y)
    y = layers.LeakyReLU(SLOPE, name=f"{name}_act2")(layers.BatchNormalization(name=f"{name}_bn2")(y))
    y = _conv(out_channels, 1, f"{name}_conv3")(y)
    return layers.Add(name=f"{name}_add")([shortcut, y])


def backbone(input_shape) -> keras.Model:
    inputs = keras.Input(input_shape, name="images")
    x = _conv(128, 3, "stem_conv")(inputs)
    b = p = 0
    for spec in BLOCKS:
        if spec == "pool":
            p += 1
            x = layers.MaxPooling2D(3, 2, padding="same", name=f"pool{p}")(x)
        else:
            b += 1
            x = res_block(x, *spec, name=f"block{b}")
    x = res_block(x, *FINAL_BLOCK, name="reduce")
    x = layers.LeakyReLU(SLOPE, name="final_act")(layers.BatchNormalization(name="final_bn")(x))
    return keras.Model(inputs, layers.Flatten(name="flatten")(x), name="backbone")


@register("lunet", preprocessing="scale")
def lunet(input_shape=(128, 64, 3), embedding_dim: int = 128) -> keras.Model:
    """LuNet; at 128x64 the flattened feature is 1024-d as in Table 6."""
    inputs = keras.Input(input_shape, name="images")
    x = backbone(input_shape)(inputs)
    x = layers.Dense(512, kernel_initializer="glorot_uniform", name="fc1")(x)
    x = layers.ReLU(name="fc1_relu")(layers.BatchNormalization(name="fc1_bn")(x))
    x = layers.Dense(embedding_dim, kernel_initializer="glorot_uniform", name="embedding")(x)
    return keras.Model(inputs, x, name="lunet")
