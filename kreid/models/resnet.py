"""ResNet-50 based models: TriNet (Hermans et al. 2017) and the ReID variants of the other papers.

* ``trinet``: Keras' ResNet-50 without its top, global average pooling,
  FC 1024 - BN - ReLU - FC 128 (25.74 M parameters).
* ``resnet50_reid``: a ResNet-50 written here with Keras' layer names (so
  ImageNet weights copy over by name) and the usual ReID options: last stride
  1, IBN-a (instance norm on half of the channels of the first norm of every
  block in the first three stages), squeeze-excitation, and a BN-neck; the
  feature is 2048-d (a linear reduction is added if ``embedding_dim`` differs).
  Its convolutions are :class:`kreid.models.layers.Conv2D` (Keras' variables and
  saved format; on a CPU the training step sums bias gradients in float32, which
  bfloat16 needs, and ran 8% faster: BENCHMARKS.md).

* ``resnet_edge``: a small basic-block ResNet (ResNet-18 layout, widths
  32-64-128-256 by default, last stride 1, ReLU6) with the LuNet-style head
  FC512-BN-ReLU6-FC(embedding_dim); plain convolutions, batch norm, ReLU6 and
  additions only, so it quantizes to full int8 like ``mobilenet_edge`` while
  fitting more on CPU budgets (dense convolutions run faster per parameter
  than depthwise ones on a CPU; see BENCHMARKS.md).

``weights``: None (random), ``'imagenet'`` (Keras downloads them; needs the
network), the path of a local weights file of Keras' ResNet-50 without top
(``.weights.h5`` or the legacy ``.h5``), or the path of a torchvision ResNet-50
state dict (``.pt``/``.pth``, read without torch by :mod:`kreid.models.weights`):
then the backbone takes torchvision's layout (ResNet v1.5: the stride sits on
the 3x3 convolution, padded one pixel on every side; no convolution biases) and
expects ``torch`` preprocessing (:func:`kreid.models.preprocessing` says so).
"""

from __future__ import annotations

import os

import keras
from keras import layers

from kreid.errors import ConfigValueError
from kreid.models import register
from kreid.models.layers import Conv2D, Dense, _Slice

_BN_EPS = 1.001e-5          # Keras' ResNet-50
_TORCH_BN_EPS = 1e-5        # torchvision's
_STAGES = ((2, 64, 3), (3, 128, 4), (4, 256, 6), (5, 512, 3))


def resnet50_base(input_shape, weights=None) -> keras.Model:
    """Keras' ResNet-50 without top (global average pooled), weights loaded as requested."""
    if weights is None:
        return keras.applications.ResNet50(include_top=False, weights=None,
                                           input_shape=input_shape, pooling="avg")
    if weights == "imagenet":
        try:
            return keras.applications.ResNet50(include_top=False, weights="imagenet",
                                               input_shape=input_shape, pooling="avg")
        except Exception as exc:  # no network: a download error of some kind
            raise RuntimeError(
                "ImageNet weights for ResNet-50 could not be downloaded "
                f"({type(exc).__name__}: {exc}); pass weights=<path of a local "
                "resnet50 no-top weights file> instead") from exc
    path = os.path.expanduser(str(weights))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path} (expected Keras ResNet-50 "
                                "no-top weights, .weights.h5 or .h5)")
    base = keras.applications.ResNet50(include_top=False, weights=None,
                                       input_shape=input_shape, pooling="avg")
    try:
        base.load_weights(path)
    except Exception as exc:
        raise ValueError(f"{path}: not loadable as ResNet-50 no-top weights ({exc})") from exc
    return base


@register("trinet", preprocessing="imagenet")
def trinet(input_shape=(256, 128, 3), embedding_dim: int = 128, weights=None,
           conv_bias: bool = True) -> keras.Model:
    """TriNet (Hermans et al. Sec. 3.3): ResNet-50 + FC1024-BN-ReLU + FC(embedding_dim).

    "We use the ResNet-50 architecture and the weights provided by He et al.
    ... (25.74 M parameters)": He et al.'s ResNet-50 has no convolution biases,
    Keras' has (26,560 of them: 25.77 M). ``conv_bias=False`` builds the
    original (25.74 M) and folds the biases of Keras' weights into the BNs
    (exact at inference); the default keeps Keras' network as it is. A PyTorch
    ``weights`` file builds torchvision's bias-free layout whatever ``conv_bias`` says.
    """
    inputs = keras.Input(input_shape, name="images")
    if _is_torch(weights):
        backbone = _torchvision_backbone(input_shape, weights, last_stride=2)
    elif conv_bias:
        base = resnet50_base(input_shape, weights)
        backbone = keras.Model(base.input, base.output, name="backbone")
    else:
        backbone = resnet50_backbone(input_shape, last_stride=2, conv_bias=False)
        if weights is not None:
            copy_weights_by_name(resnet50_base(input_shape, weights), backbone)
    x = backbone(inputs)
    x = Dense(1024, kernel_initializer="he_normal", name="fc1")(x)
    x = layers.ReLU(name="fc1_relu")(layers.BatchNormalization(name="fc1_bn")(x))
    x = Dense(embedding_dim, kernel_initializer="glorot_uniform", name="embedding")(x)
    return keras.Model(inputs, x, name="trinet")


def _norm(x, name, ibn: bool, eps: float = _BN_EPS):
    if not ibn:
        return layers.BatchNormalization(epsilon=eps, name=name)(x)
    half = x.shape[-1] // 2
    # instance norm = group norm with one channel per group
    a = layers.GroupNormalization(groups=half, epsilon=1e-5, name=f"{name}_in")(
        _Slice(0, half, name=f"{name}_in_split")(x))
    b = layers.BatchNormalization(epsilon=_BN_EPS, name=f"{name}_bnhalf")(
        _Slice(half, x.shape[-1], name=f"{name}_bn_split")(x))
    return layers.Concatenate(name=f"{name}_ibn")([a, b])




def _se(x, name, reduction=16):
    c = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    s = Conv2D(c // reduction, 1, activation="relu", name=f"{name}_se_reduce")(s)
    s = Conv2D(c, 1, activation="sigmoid", name=f"{name}_se_expand")(s)
    return layers.Multiply(name=f"{name}_se_scale")([x, s])


def _bottleneck(x, filters, stride, name, project, ibn, se, use_bias=True,
                torch_layout=False):
    stride1, stride3 = (1, stride) if torch_layout else (stride, 1)
    eps = _TORCH_BN_EPS if torch_layout else _BN_EPS
    if project:
        shortcut = Conv2D(4 * filters, 1, strides=stride, use_bias=use_bias,
                          name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=eps, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    y = Conv2D(filters, 1, strides=stride1, use_bias=use_bias, name=f"{name}_1_conv")(x)
    y = layers.Activation("relu", name=f"{name}_1_relu")(_norm(y, f"{name}_1_bn", ibn, eps))
    if stride3 == 2:                      # PyTorch pads (1, 1); Keras "same" would pad (0, 1)
        y = layers.ZeroPadding2D(1, name=f"{name}_2_pad")(y)
    y = Conv2D(filters, 3, strides=stride3, padding="valid" if stride3 == 2 else "same",
               use_bias=use_bias, name=f"{name}_2_conv")(y)
    y = layers.Activation("relu", name=f"{name}_2_relu")(
        layers.BatchNormalization(epsilon=eps, name=f"{name}_2_bn")(y))
    y = Conv2D(4 * filters, 1, use_bias=use_bias, name=f"{name}_3_conv")(y)
    y = layers.BatchNormalization(epsilon=eps, name=f"{name}_3_bn")(y)
    if se:
        y = _se(y, name)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def resnet50_backbone(input_shape, last_stride: int = 1, ibn: bool = False,
                      se: bool = False, conv_bias: bool = True,
                      torch_layout: bool = False) -> keras.Model:
    """ResNet-50 with Keras' layer names; ``conv_bias=False`` is He et al.'s original
    (no bias in any convolution: each is followed by a BN); ``torch_layout`` is
    torchvision's v1.5 (stride on the 3x3 convolution)."""
    inputs = keras.Input(input_shape, name="images")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = Conv2D(64, 7, strides=2, use_bias=conv_bias, name="conv1_conv")(x)
    eps = _TORCH_BN_EPS if torch_layout else _BN_EPS
    x = layers.Activation("relu", name="conv1_relu")(
        layers.BatchNormalization(epsilon=eps, name="conv1_bn")(x))
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, filters, blocks in _STAGES:
        for b in range(1, blocks + 1):
            stride = 1 if stage == 2 or b > 1 else (last_stride if stage == 5 else 2)
            x = _bottleneck(x, filters, stride, f"conv{stage}_block{b}", project=b == 1,
                            ibn=ibn and stage < 5, se=se, use_bias=conv_bias,
                            torch_layout=torch_layout)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="backbone")


def _is_torch(weights) -> bool:
    from kreid.models.weights import is_torch_file
    return is_torch_file(weights)


def _torchvision_backbone(input_shape, weights, last_stride: int) -> keras.Model:
    """torchvision's ResNet-50 layout with the weights of a PyTorch state dict."""
    from kreid.models.weights import load_torchvision_resnet50, resolve

    backbone = resnet50_backbone(input_shape, last_stride, conv_bias=False, torch_layout=True)
    load_torchvision_resnet50(backbone, resolve(weights))
    return backbone


def copy_weights_by_name(source: keras.Model, target: keras.Model) -> int:
    """Copy weights of same-named, same-shaped layers; returns the number of layers copied.

    A source convolution with a bias copied into a bias-free target convolution
    (He et al.'s ResNet-50 from Keras' weights) keeps its kernel, and its bias b
    is folded into the BN that follows (``<conv>_bn``: moving mean - b), which is
    exact at inference (BN(x + b) with mean mu = BN(x) with mean mu - b).
    """
    src = {layer.name: layer for layer in source.layers}
    tgt = {layer.name: layer for layer in target.layers}
    copied, folds = 0, []
    for layer in target.layers:
        other = src.get(layer.name)
        if other is None or not layer.weights:
            continue
        if [w.shape for w in layer.weights] == [w.shape for w in other.weights]:
            layer.set_weights(other.get_weights())
            copied += 1
        elif (isinstance(layer, layers.Conv2D) and not layer.use_bias and other.use_bias
              and layer.kernel.shape == other.kernel.shape):
            layer.kernel.assign(other.kernel)
            bn = tgt.get(layer.name[:-len("_conv")] + "_bn")
            if bn is None or not isinstance(bn, layers.BatchNormalization):
                raise ValueError(f"{layer.name}: no BN to fold the bias of the source into")
            folds.append((bn, other.bias))
            copied += 1
    for bn, bias in folds:                 # after the plain copies (which set the BN as is)
        bn.moving_mean.assign(src[bn.name].moving_mean - bias)
    return copied


@register("resnet50_reid", preprocessing="imagenet")
def resnet50_reid(input_shape=(256, 128, 3), embedding_dim: int = 2048, last_stride: int = 1,
                  ibn: bool = False, se: bool = False, bnneck: bool = True,
                  weights=None, bnneck_center: bool = False) -> keras.Model:
    """ResNet-50 ReID baseline (BoT-style): last stride 1, optional IBN-a/SE, BN-neck.

    ``bnneck_center``: the BN after global average pooling learns a shift (a
    plain BN, as Sabri et al. Sec. 3.4: "a global average pooling (GAP) layer
    and a batch normalization layer (BN)"); False is the BN-neck of Luo et al.
    (bias frozen at 0).
    """
    if last_stride not in (1, 2):
        raise ConfigValueError(f"last_stride must be 1 or 2, got {last_stride}")
    if _is_torch(weights):
        if ibn or se:
            raise ConfigValueError("resnet50_reid: torchvision weights fit the plain ResNet-50 "
                                   "(ibn=False, se=False)")
        backbone = _torchvision_backbone(input_shape, weights, last_stride)
    else:
        backbone = resnet50_backbone(input_shape, last_stride, ibn, se)
        if weights is not None:
            copy_weights_by_name(resnet50_base(input_shape, weights), backbone)
    inputs = keras.Input(input_shape, name="images")
    x = backbone(inputs)
    if embedding_dim != 2048:
        x = Dense(embedding_dim, kernel_initializer="he_normal", name="reduction")(x)
    if bnneck:
        x = layers.BatchNormalization(center=bnneck_center, name="bnneck")(x)
    return keras.Model(inputs, x, name="resnet50_reid")


def _basic_block(x, filters: int, stride: int, name: str):
    """ResNet basic block (two 3x3 convolutions) with ReLU6 activations."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                 name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                      name=f"{name}_conv1")(x)
    y = layers.ReLU(6.0, name=f"{name}_relu1")(layers.BatchNormalization(name=f"{name}_bn1")(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    return layers.ReLU(6.0, name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


@register("resnet_edge", preprocessing="scale")
def resnet_edge(input_shape=(128, 64, 3), embedding_dim: int = 128,
                widths=(32, 64, 128, 256), blocks=(2, 2, 2, 2),
                last_stride: int = 1) -> keras.Model:
    """Basic-block ResNet (ResNet-18 layout by default) + GAP + FC512-BN-ReLU6 + FC."""
    if len(widths) != len(blocks) or not widths:
        raise ConfigValueError(f"widths {widths} and blocks {blocks} must be non-empty and "
                               "of the same length")
    if last_stride not in (1, 2):
        raise ConfigValueError(f"last_stride must be 1 or 2, got {last_stride}")
    inputs = keras.Input(input_shape, name="images")
    x = layers.Conv2D(widths[0], 7, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(inputs)
    x = layers.ReLU(6.0, name="stem_relu")(layers.BatchNormalization(name="stem_bn")(x))
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    last = len(widths) - 1
    for i, (filters, count) in enumerate(zip(widths, blocks)):
        for b in range(count):
            stride = 1 if i == 0 or b > 0 else (last_stride if i == last else 2)
            x = _basic_block(x, int(filters), stride, f"stage{i + 1}_block{b + 1}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    inputs = keras.Input(input_shape, name="images")
    x = Dense(512, kernel_initializer="glorot_uniform", name="fc1")(backbone(inputs))
    x = layers.ReLU(6.0, name="fc1_relu")(layers.BatchNormalization(name="fc1_bn")(x))
    x = Dense(embedding_dim, kernel_initializer="glorot_uniform", name="embedding")(x)
    return keras.Model(inputs, x, name="resnet_edge")
