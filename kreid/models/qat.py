"""Quantization-aware training (QAT) for Keras 3: a float model's fake-quantized twin.

tensorflow-model-optimization's QAT works on Keras 2 (``tf_keras``) only: its
0.8.1 release requires tf-keras and refuses a Keras 3 model ("`to_quantize`
can only either be a keras Sequential or Functional model"; its Keras 3
issue, tensorflow/model-optimization#1119, is open). So kreid builds its own,
for the graphs TFLite's converter makes:

- **Weights**: int8, symmetric, per output channel, narrow range [-127, 127]
  (TFLite's full-integer kernels), on the weights the converter will use:
  a convolution followed by a batch norm is *folded* as the converter folds
  it, ``W * gamma / sqrt(var + eps)`` and ``beta + (b - mean) * gamma /
  sqrt(var + eps)``, with the norm's moving statistics frozen (Jacob et al.,
  CVPR 2018, Sec. 3.2, freeze them once the network has converged: here QAT
  fine-tunes a trained float model). A Dense layer is a 1x1 convolution on a
  1x1 map, so its weights can be quantized per channel too (the converter's
  fully-connected op refuses per-channel fake-quant weights).
- **Activations**: int8, asymmetric, per tensor, at every tensor the converter
  will quantize: the model input, every operation's output, except where the
  converter fuses (a ReLU/ReLU6 after a convolution, an addition or a
  multiplication) or keeps the input's scale (max-pooling, padding, reshapes,
  slices). A batch norm that follows no convolution becomes the converter's
  MUL then ADD, each quantized.
- **Ranges are learned**, not tracked: each activation range starts from the
  calibration kreid's post-training export uses (``image_mse`` over 200
  training images of the float model, :mod:`kreid.export.ranges`) and is then a
  trained variable: TensorFlow's fake-quant op gives the range ends a gradient
  from the values it clips (the PACT-style gradient). Moving averages of batch
  min/max (tfmot's) restart from the outliers that image_mse gives up: on a
  CUHK03 LuNet the min/max of 12 calibration images were 100-500x the rest's
  and collapsed every typical image (BENCHMARKS.md).

The converter turns the fake-quant model's SavedModel into a full-integer
TFLite file whose scales are these ranges, with no calibration pass
(:mod:`kreid.export.formats`, ``tflite_qat_int8``). :func:`float_view` is the
same model without quantization (shared weights), for float exports.

Every layer of the twin is the float model's own layer object (the weights are
shared: training the twin trains the float model), wrapped where a weight is
quantized (:class:`FoldedConv`, :class:`QuantizedBatchNorm`); new are only the
activation quantizers (:class:`FakeQuant`).
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf
from keras import layers

NUM_BITS = 8
# layers whose int8 output keeps its input's scale in TFLite (no range of their own)
SCALE_PRESERVING = (layers.MaxPooling2D, layers.MaxPooling1D, layers.GlobalMaxPooling2D,
                    layers.ZeroPadding2D, layers.Cropping2D, layers.Flatten, layers.Reshape,
                    layers.Permute, layers.Dropout, layers.InputLayer)
# producers the converter fuses a following ReLU/ReLU6 into
FUSES_ACTIVATION = (layers.Add, layers.Subtract, layers.Multiply)


class QATError(ValueError):
    """A model kreid cannot quantize-aware train; names the layer."""


def fake_quant(x, lo, hi):
    """Asymmetric per-tensor int8 fake quantization (TFLite's activations): range [lo, hi]
    nudged so that 0 is exact, 256 levels."""
    return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=NUM_BITS)


def fake_quant_weights(w):
    """Symmetric per-channel int8 fake quantization along the last axis, narrow range
    [-127, 127] with scale max|w_c| / 127 (TFLite's convolution weights)."""
    axes = list(range(len(w.shape) - 1))
    bound = tf.maximum(tf.reduce_max(tf.abs(w), axis=axes), 1e-12)
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        w, -bound, bound, num_bits=NUM_BITS, narrow_range=True)


def _fake_quant_constant(c):
    """A constant operand of an elementwise op as TFLite stores it: int8 over its own range
    (0 included)."""
    return fake_quant(c, tf.minimum(tf.reduce_min(c), 0.0), tf.maximum(tf.reduce_max(c), 0.0))


# ---------------------------------------------------------------------------- layers
@keras.saving.register_keras_serializable(package="kreid")
class FakeQuant(layers.Layer):
    """An activation's int8 fake quantization with a learned range [lo, hi].

    ``quantize`` False: the identity (the float view). While :func:`recording` is on,
    the layer keeps ``per_image`` values of each input image (the same positions every
    time) for the range calibration and passes its input through.
    """

    def __init__(self, quantize: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.quantize = bool(quantize)
        self.record: list | None = None
        self._positions = None

    def build(self, input_shape):
        self.lo = self.add_weight(name="lo", shape=(), initializer="zeros")
        self.hi = self.add_weight(name="hi", shape=(), initializer="ones")

    def call(self, x):
        if self.record is not None:
            self._keep(x)
            return x
        if not self.quantize:
            return x
        return fake_quant(x, self.lo, self.hi)

    def _keep(self, x, per_image: int = 2048):
        values = np.asarray(x, np.float32).reshape(len(x), -1)
        if self._positions is None:
            rng = np.random.default_rng(len(self.name))
            self._positions = (None if values.shape[1] <= per_image else
                               np.sort(rng.choice(values.shape[1], per_image, replace=False)))
        self.record.append((values if self._positions is None
                            else values[:, self._positions],
                            float(values.min()), float(values.max())))

    def get_config(self):
        return {**super().get_config(), "quantize": self.quantize}


def _bn_scale_shift(bn):
    """A batch norm in inference as ``x * scale + shift`` (its moving statistics)."""
    var = tf.convert_to_tensor(bn.moving_variance)
    scale = tf.math.rsqrt(var + bn.epsilon)
    if bn.scale:
        scale = scale * bn.gamma
    shift = -tf.convert_to_tensor(bn.moving_mean) * scale
    if bn.center:
        shift = shift + bn.beta
    return scale, shift


def _check_last_axis(bn, rank: int) -> None:
    axis = bn.axis[0] if isinstance(bn.axis, (list, tuple)) and len(bn.axis) == 1 else bn.axis
    if axis not in (-1, rank - 1):
        raise QATError(f"{bn.name}: a batch norm over axis {bn.axis}; QAT folds only "
                       "channels-last norms")


@keras.saving.register_keras_serializable(package="kreid")
class FoldedConv(layers.Layer):
    """A Conv2D, DepthwiseConv2D or Dense layer with the batch norm that follows it (if
    any) folded in, and its folded weights fake-quantized per output channel.

    The wrapped layers are the float model's own (their weights are trained); the
    norm's moving statistics stay frozen. ``quantize`` False: the float computation
    (equal to the layer then the norm in inference).
    """

    def __init__(self, layer, bn=None, quantize: bool = True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if isinstance(bn, dict):
            bn = keras.saving.deserialize_keras_object(bn)
        self.layer, self.bn, self.quantize = layer, bn, bool(quantize)
        kind = type(layer)
        if isinstance(layer, layers.DepthwiseConv2D):
            self.kind = "depthwise"
        elif isinstance(layer, layers.Conv2D):
            if layer.groups != 1 or layer.data_format != "channels_last":
                raise QATError(f"{layer.name}: QAT supports channels-last convolutions "
                               f"without groups, not {kind.__name__}(groups={layer.groups}, "
                               f"{layer.data_format})")
            self.kind = "conv"
        elif isinstance(layer, layers.Dense):
            self.kind = "dense"
        else:
            raise QATError(f"{layer.name}: cannot fold {kind.__name__}")
        if layer.activation not in (None, keras.activations.linear):
            raise QATError(f"{layer.name}: a fused activation inside {kind.__name__} is not "
                           "supported; use a separate activation layer")

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        if self.bn is not None:
            out_shape = self.layer.compute_output_shape(input_shape)
            if not self.bn.built:
                self.bn.build(out_shape)
            _check_last_axis(self.bn, len(out_shape))

    def folded(self):
        """(kernel, bias) of the layer with the norm folded in, as TFLite computes it."""
        kernel = tf.convert_to_tensor(self.layer.kernel)
        out = kernel.shape[-1] if self.kind != "depthwise" else kernel.shape[2] * kernel.shape[3]
        bias = (tf.convert_to_tensor(self.layer.bias) if self.layer.use_bias
                else tf.zeros([out], kernel.dtype))
        if self.bn is None:
            return kernel, bias
        scale, shift = _bn_scale_shift(self.bn)
        if self.kind == "depthwise":
            kernel = kernel * tf.reshape(scale, [1, 1, kernel.shape[2], kernel.shape[3]])
        else:
            kernel = kernel * scale
        return kernel, bias * scale + shift

    def _quantized_kernel(self, kernel):
        if not self.quantize:
            return kernel
        if self.kind == "depthwise":      # TFLite's channels: in x multiplier, last
            h, w, c, m = kernel.shape
            flat = fake_quant_weights(tf.reshape(kernel, [h, w, 1, c * m]))
            return tf.reshape(flat, [h, w, c, m])
        return fake_quant_weights(kernel)

    def call(self, x):
        kernel, bias = self.folded()
        c = self.layer
        if self.kind == "dense":          # a 1x1 convolution on a 1x1 map: per-channel
            if len(x.shape) != 2:
                raise QATError(f"{c.name}: QAT folds Dense layers on [batch, features]")
            w = self._quantized_kernel(kernel[None, None])
            y = tf.nn.conv2d(tf.reshape(x, [-1, 1, 1, x.shape[-1]]), w, 1, "VALID")
            return tf.reshape(y, [-1, kernel.shape[-1]]) + bias
        kernel = self._quantized_kernel(kernel)
        if self.kind == "depthwise":
            y = keras.ops.depthwise_conv(x, kernel, c.strides, c.padding, c.data_format,
                                         c.dilation_rate)
        else:
            y = keras.ops.conv(x, kernel, c.strides, c.padding, c.data_format, c.dilation_rate)
        return y + bias

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "quantize": self.quantize,
                "layer": keras.saving.serialize_keras_object(self.layer),
                "bn": None if self.bn is None else keras.saving.serialize_keras_object(self.bn)}


@keras.saving.register_keras_serializable(package="kreid")
class QuantizedBatchNorm(layers.Layer):
    """A batch norm that follows no convolution (a pre-activation norm): in TFLite a MUL
    then an ADD, each output quantized; frozen moving statistics."""

    def __init__(self, bn, quantize: bool = True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(bn, dict):
            bn = keras.saving.deserialize_keras_object(bn)
        self.bn, self.quantize = bn, bool(quantize)
        self.product = FakeQuant(quantize, name=f"{self.name}_mul_quant")

    def build(self, input_shape):
        if not self.bn.built:
            self.bn.build(input_shape)
        _check_last_axis(self.bn, len(input_shape))
        if not self.product.built:
            self.product.build(input_shape)

    def call(self, x):
        scale, shift = _bn_scale_shift(self.bn)
        if self.quantize:           # the converter stores both constants as int8 tensors
            scale, shift = _fake_quant_constant(scale), _fake_quant_constant(shift)
        return self.product(x * scale) + shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "quantize": self.quantize,
                "bn": keras.saving.serialize_keras_object(self.bn)}


QUANT_LAYERS = (FakeQuant, FoldedConv, QuantizedBatchNorm)


# --------------------------------------------------------------------- the rewrite
def _fusable_activation(layer) -> bool:
    if isinstance(layer, layers.ReLU):
        return (layer.max_value in (None, 6.0) and not layer.negative_slope
                and not layer.threshold)
    if isinstance(layer, layers.Activation):
        name = getattr(layer.activation, "__name__", "")
        return name in ("relu", "relu6")
    return False


def _flat(values) -> list:
    return list(tf.nest.flatten(values))


def _consumers(model, inputs) -> dict[int, list]:
    """{id(layer): the layers its output feeds} over ``model``'s graph, nested models
    entered (a nested model's output feeds ``None``: something outside)."""
    producer: dict[int, object] = {}
    fed: dict[int, list] = {}

    def record(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        for t in _flat((args, kwargs)):
            source = producer.get(id(t))
            if source is not None:
                fed.setdefault(id(source), []).append(layer)
        for t in _flat(out):
            producer[id(t)] = layer
        return out

    keras.models.clone_model(model, input_tensors=inputs, clone_function=lambda layer: layer,
                             call_function=record, recursive=True)
    return fed


def quantize_model(model: keras.Model, quantize: bool = True) -> keras.Model:
    """The fake-quantized twin of a float functional ``model`` (nested functional models
    entered), sharing its weights; see the module docstring for where quantizers go.
    ``quantize`` False gives the same graph without any quantization (:func:`float_view`)."""
    fed = _consumers(model, _new_inputs(model))
    folded: dict[int, object] = {}                 # id(conv) -> its norm
    absorbed: set[int] = set()                     # norms folded into their convolution
    for layer in _all_layers(model):
        if isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
            after = fed.get(id(layer), [])
            if len(after) == 1 and isinstance(after[0], layers.BatchNormalization):
                folded[id(layer)] = after[0]
                absorbed.add(id(after[0]))
    inputs = _new_inputs(model)
    input_ids = {id(t) for t in _flat(inputs)}
    input_quant = FakeQuant(quantize, name="input_quant")

    def after(layer) -> list:
        """What ``layer``'s output feeds, looking through a norm folded into it."""
        out = fed.get(id(layer), [None])
        if id(layer) in folded:
            out = fed.get(id(folded[id(layer)]), [None])
        return out

    def needs_range(layer) -> bool:
        if isinstance(layer, (SCALE_PRESERVING, keras.Model)) or id(layer) in absorbed:
            return False
        if type(layer).__name__ in ("EdgePad2D", "_Slice"):     # copies of the input
            return False
        nxt = after(layer)
        fusing = isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense,
                                    FUSES_ACTIVATION))
        return not (fusing and len(nxt) == 1 and nxt[0] is not None
                    and _fusable_activation(nxt[0]))

    def rewrite(layer, *args, **kwargs):
        args = tf.nest.map_structure(
            lambda t: input_quant(t) if id(t) in input_ids else t, args)
        if id(layer) in absorbed:              # its convolution computed it already
            return args[0]
        kwargs.pop("training", None)           # every wrapped layer runs as in inference
        if id(layer) in folded:
            out = FoldedConv(layer, folded[id(layer)], quantize,
                             name=f"{layer.name}_folded")(*args)
        elif isinstance(layer, layers.BatchNormalization):
            out = QuantizedBatchNorm(layer, quantize, name=f"{layer.name}_quantized")(*args)
        elif isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.Dense)):
            out = FoldedConv(layer, None, quantize, name=f"{layer.name}_quantized")(*args)
        else:
            out = layer(*args, **kwargs)
        if needs_range(layer):
            out = FakeQuant(quantize, name=f"{layer.name}_quant")(out)
        return out

    twin = keras.models.clone_model(model, input_tensors=inputs,
                                    clone_function=lambda layer: layer, call_function=rewrite,
                                    recursive=True)
    return keras.Model(inputs, twin.outputs if len(twin.outputs) > 1 else twin.output,
                       name=f"{model.name}_qat")


def _new_inputs(model):
    """Fresh inputs of ``model``'s input structure, names and dtypes."""
    return tf.nest.map_structure(
        lambda t: keras.Input(tuple(t.shape[1:]), dtype=t.dtype, name=t.name), model.input)


def _all_layers(model) -> list:
    from kreid.models import all_layers

    return all_layers(model)


def quantizers(model) -> list[FakeQuant]:
    """Every activation quantizer of a QAT model, in graph order."""
    return [layer for layer in _all_layers(model) if isinstance(layer, FakeQuant)]


def is_qat(model) -> bool:
    return any(isinstance(layer, QUANT_LAYERS) for layer in _all_layers(model))


def float_view(model: keras.Model) -> keras.Model:
    """A QAT model without any quantization op (its float computation, folded), sharing
    its weights: what the float exports of a QAT model hold."""

    def twin(layer):
        if isinstance(layer, QUANT_LAYERS):
            config = dict(layer.get_config(), quantize=False)
            clone = type(layer).from_config(config)
            if isinstance(layer, FoldedConv):
                clone.layer, clone.bn = layer.layer, layer.bn
            elif isinstance(layer, QuantizedBatchNorm):
                clone.bn = layer.bn
            return clone
        return layer

    inputs = _new_inputs(model)
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=twin,
                                     recursive=True)
    return keras.Model(inputs, clone.output, name=f"{model.name}_float")


@contextlib.contextmanager
def recording(model):
    """Within it, every FakeQuant of ``model`` passes its input through and keeps a sample
    of it per image (``layer.record``: (values [images, positions], min, max) per
    batch)."""
    qs = quantizers(model)
    for q in qs:
        q.record = []
    try:
        yield qs
    finally:
        for q in qs:
            q.record = None


def calibrate(model, images: np.ndarray, method: str = "image_mse",
              batch_size: int = 32) -> dict[str, tuple[float, float]]:
    """Set every activation range of the QAT ``model`` from ``images`` as the post-training
    export would (``method`` of :mod:`kreid.export.ranges`, on the float computation:
    the values recorded in :func:`float_view`, weights unquantized); returns
    {quantizer name: (lo, hi)}."""
    from kreid.export import ranges

    out = {}
    target = {q.name: q for q in quantizers(model)}
    view = float_view(model)
    with recording(view) as qs:
        for i in range(0, len(images), batch_size):
            view(images[i:i + batch_size], training=False)
        for r in qs:
            q = target[r.name]
            if not r.record:
                raise QATError(f"{q.name}: saw no values during calibration")
            values = np.concatenate([b[0] for b in r.record])
            bounds = (min(b[1] for b in r.record), max(b[2] for b in r.record))
            lo, hi = ranges.clipped_range(values, method, bounds)
            if hi - lo < 1e-6:             # a constant tensor (e.g. all zeros): a tiny range
                lo, hi = min(lo, 0.0), max(hi, lo + 1e-6)
            q.lo.assign(lo)
            q.hi.assign(hi)
            out[q.name] = (lo, hi)
    return out
