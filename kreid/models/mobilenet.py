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

from kreid.models import register


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
    x = layers.Dense(512, kernel_initializer="glorot_uniform", name="fc1")(x)
    x = layers.ReLU(6.0 if relu6 else None, name="fc1_relu")(
        layers.BatchNormalization(name="fc1_bn")(x))
    x = layers.Dense(embedding_dim, kernel_initializer="glorot_uniform", name="embedding")(x)
    return keras.Model(inputs, x, name="mobilenet_edge")
