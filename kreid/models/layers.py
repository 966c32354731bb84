"""Layers kreid's own architectures share: Keras' batch norm and convolution with faster
training steps.

:class:`BatchNorm` is Keras' ``BatchNormalization`` with the same variables,
maths and saved format; only its training step on the TensorFlow backend
changes. Keras 3 computes batch statistics and the normalisation as separate
element-wise ops (mean, squared difference, mean, multiply, subtract, add;
their gradients as many more), each a full pass over the activation in
memory. Profiled on LuNet's 128x64 training step (``benchmarks/lunet_step.py
--profile``, BENCHMARKS.md), those passes were about a quarter of the step's
op time. ``tf.nn.fused_batch_norm`` does the same in one kernel forward and
one backward (oneDNN on CPU, cuDNN on GPU: the path tf.keras 2 always took).
Inference (``training=False``), and so every export, runs Keras' own code
unchanged, and every case the fused kernel does not cover falls back to it:
other backends, inputs that are not 4-D channels-last, masks, renorm,
synchronized (cross-replica) statistics, and epsilons below the kernel's
1.001e-5 floor (PyTorch-layout models use 1e-5).

The moving statistics follow Keras' rule with the *biased* batch variance, as
``BatchNormalization`` does; the fused kernel returns the unbiased one, which
is rescaled by (n - 1) / n.
"""

from __future__ import annotations

import keras
from keras import layers

_FUSED_MIN_EPSILON = 1.001e-5
_FUSED_DTYPES = ("float32", "bfloat16", "float16")


@keras.saving.register_keras_serializable(package="kreid")
class BatchNorm(layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` that trains with the fused kernel on TensorFlow."""

    def _fusable(self, inputs, training, mask) -> bool:
        return (bool(training) and self.trainable and mask is None and not self.renorm
                and not self.synchronized and keras.backend.backend() == "tensorflow"
                and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and self.epsilon >= _FUSED_MIN_EPSILON
                and keras.backend.standardize_dtype(inputs.dtype) in _FUSED_DTYPES)

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones((channels,), tf.float32)
        offset = self.beta if self.center else tf.zeros((channels,), tf.float32)
        y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(scale, tf.float32), tf.cast(offset, tf.float32),
            epsilon=self.epsilon, data_format="NHWC", is_training=True)
        n = tf.cast(tf.size(inputs) // channels, tf.float32)
        variance = unbiased * tf.maximum(n - 1.0, 0.0) / tf.maximum(n, 1.0)
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.cast(mean, self.moving_mean.dtype)
                                * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m + tf.cast(
            variance, self.moving_variance.dtype) * (1.0 - m))
        return tf.cast(y, self.compute_dtype)


def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def _bias_add_summed(y, bias):
    """``tf.nn.bias_add(y, bias)`` whose bias gradient is a ``reduce_sum`` over all but the
    channel axis, instead of TensorFlow's ``BiasAddGrad``, for two reasons measured here
    (BENCHMARKS.md, issue 14):

    * In bfloat16 the CPU's ``BiasAddGrad`` (and the oneDNN fusions of it) accumulates in
      bfloat16: summed over 65,536 positions of values in [0, 1) it returns 256 where the
      sum is 32,822, so under ``mixed_bfloat16`` every bias behind a large activation got
      a wrong gradient. ``reduce_sum`` accumulates in float32 (32,768, the nearest
      bfloat16).
    * A ``BiasAddGrad`` beside a convolution's weight gradient is fused by the oneDNN graph
      pass into ``Conv2DBackpropFilterWithBias``, whose bias part (``compute_diff_bias``)
      was 8% of the CPU time of LuNet's 128x64 training step under ``perf``.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def add(y, bias):
        def grad(g):
            return g, tf.reduce_sum(g, axis=list(range(len(g.shape) - 1)))
        return tf.nn.bias_add(y, bias), grad
    return add(y, bias)


def _summed_bias_path(layer, training) -> bool:
    return (bool(training) and layer.use_bias and keras.backend.backend() == "tensorflow"
            and not _gpu_visible())


@keras.saving.register_keras_serializable(package="kreid")
class Conv2D(layers.Conv2D):
    """``keras.layers.Conv2D`` (same variables and saved format) whose training step on a CPU
    sums the bias gradient itself (:func:`_bias_add_summed`: correct in bfloat16, and at
    LuNet's shapes forward + weight and bias gradients took 15-18% less for the 7x7 stem
    and the 3x3 convolutions at 128x64 and 64x32, the same within noise at 16x8:
    ``benchmarks/lunet_ops.py``).
    Inference (and so export) and GPUs run Keras' convolution unchanged.
    """

    def call(self, inputs, training=None):
        if not (_summed_bias_path(self, training) and self.data_format == "channels_last"):
            return super().call(inputs)
        import tensorflow as tf

        y = self.convolution_op(inputs, tf.cast(self.kernel, inputs.dtype))
        y = _bias_add_summed(y, tf.cast(self.bias, y.dtype))
        return y if self.activation is None else self.activation(y)


@keras.saving.register_keras_serializable(package="kreid")
class PointwiseConv2D(Conv2D):
    """A 1x1, stride-1 ``Conv2D`` (same variables and saved format) whose training step on
    a CPU runs as one matrix product over all pixels.

    Profiled on LuNet's 128x64 training step, oneDNN's weight gradient of a 1x1
    convolution over a large image (``Conv2DBackpropFilter``, e.g. 32 -> 128 channels
    at 128x64) took several times its FLOP count's share; the same maths as
    ``MatMul`` ran forward + backward 1.3-2x faster (BENCHMARKS.md); the bias gradient
    is summed as in :class:`Conv2D` (:func:`_bias_add_summed`). Inference
    (and so export: int8 converters quantize convolutions per channel) and GPUs run
    Keras' convolution unchanged.
    """

    def _as_matmul(self, training) -> bool:
        return (bool(training) and keras.backend.backend() == "tensorflow"
                and tuple(self.kernel_size) == (1, 1) and tuple(self.strides) == (1, 1)
                and tuple(self.dilation_rate) == (1, 1) and self.groups == 1
                and self.data_format == "channels_last" and not _gpu_visible())

    def call(self, inputs, training=None):
        if not self._as_matmul(training):
            return super().call(inputs, training=training)   # kreid's Conv2D
        import tensorflow as tf

        channels = inputs.shape[-1]
        kernel = tf.reshape(tf.cast(self.kernel, inputs.dtype), (channels, self.filters))
        y = tf.matmul(tf.reshape(inputs, (-1, channels)), kernel)
        if self.use_bias:
            y = _bias_add_summed(y, tf.cast(self.bias, y.dtype))
        y = tf.reshape(y, tf.concat([tf.shape(inputs)[:-1], [self.filters]], axis=0))
        return y if self.activation is None else self.activation(y)


@keras.saving.register_keras_serializable(package="kreid")
class Dense(layers.Dense):
    """``keras.layers.Dense`` (same variables and saved format) whose training step on a CPU
    sums the bias gradient itself (:func:`_bias_add_summed`), so that it is accumulated in
    float32 under ``mixed_bfloat16`` too. Inference and GPUs run Keras' own code."""

    def call(self, inputs, training=None):
        if not (_summed_bias_path(self, training) and len(inputs.shape) >= 2):
            return super().call(inputs, training=training)
        import tensorflow as tf

        y = keras.ops.matmul(inputs, tf.cast(self.kernel, inputs.dtype))
        y = _bias_add_summed(y, tf.cast(self.bias, y.dtype))
        return y if self.activation is None else self.activation(y)


@keras.saving.register_keras_serializable(package="kreid")
class _Slice(layers.Layer):
    """Channel slice [start, stop) (a named layer instead of a lambda, so models serialise):
    the IBN split of kreid's ResNet-50 and the test-time f_id of a run whose loss
    reserves leading dimensions (Sabri et al.'s f_attr)."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.stop = start, stop

    def call(self, x):
        return x[..., self.start:self.stop]

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


ChannelSlice = _Slice       # public name (the registered class keeps its saved name)
