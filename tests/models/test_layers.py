"""kreid.models.layers (fused-BN, matmul and summed-bias training paths) and LuNet's pool
padding: the same values, gradients and moving statistics as Keras' own layers, computed in
NumPy, and bias gradients summed in float32 under mixed bfloat16."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kreid.models.layers import BatchNorm, Conv2D, Dense, PointwiseConv2D
from kreid.models.lunet import EdgePad2D, max_pool
from kreid.training import precision

RNG = np.random.default_rng(0)


def _bn_reference(x, dy, gamma, beta, eps):
    """Training-mode batch norm and its input gradient, in NumPy (biased batch variance)."""
    c = x.shape[-1]
    xf, dyf = x.reshape(-1, c).astype(np.float64), dy.reshape(-1, c).astype(np.float64)
    mean, var = xf.mean(0), xf.var(0)
    sigma = np.sqrt(var + eps)
    xhat = (xf - mean) / sigma
    dxhat = dyf * gamma
    dx = (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0)) / sigma
    return ((xhat * gamma + beta).reshape(x.shape), dx.reshape(x.shape), mean, var,
            (dyf * xhat).sum(0), dyf.sum(0))


@pytest.mark.parametrize("shape,momentum", [((6, 5, 4, 3), 0.99), ((2, 1, 1, 4), 0.9)])
def test_batchnorm_trains_like_the_formula_and_keras(shape, momentum):
    x = (RNG.normal(size=shape) * 3 + 1.5).astype(np.float32)
    dy = RNG.normal(size=shape).astype(np.float32)
    gamma, beta = RNG.uniform(0.5, 2, shape[-1]), RNG.normal(size=shape[-1])
    results = {}
    for cls in (BatchNorm, keras.layers.BatchNormalization):
        bn = cls(momentum=momentum, epsilon=1e-3)
        bn.build(shape)
        bn.gamma.assign(gamma.astype(np.float32))
        bn.beta.assign(beta.astype(np.float32))

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = bn(x, training=True)
                loss = tf.reduce_sum(y * dy)
            return (y,) + tuple(tape.gradient(loss, [x, bn.gamma, bn.beta]))
        out = [np.asarray(v) for v in step(tf.constant(x))]
        results[cls] = out + [bn.moving_mean.numpy(), bn.moving_variance.numpy()]
    y, dx, mean, var, dgamma, dbeta = _bn_reference(x, dy, gamma, beta, 1e-3)
    expected = [y, dx, dgamma, dbeta, (1 - momentum) * mean, momentum + (1 - momentum) * var]
    for got in results.values():
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=2e-4, atol=1e-6 + 2e-4 * np.abs(e).max())


def test_batchnorm_falls_back_where_the_kernel_does_not_apply():
    bn = BatchNorm(epsilon=1e-5)           # below the fused kernel's floor: Keras' own path
    bn.build((4, 2, 2, 3))
    assert not bn._fusable(tf.zeros((4, 2, 2, 3)), True, None)
    dense_bn = BatchNorm()
    dense_bn.build((4, 3))
    assert not dense_bn._fusable(tf.zeros((4, 3)), True, None)      # 2-D input
    assert not BatchNorm()._fusable(tf.zeros((4, 2, 2, 3)), False, None)   # inference
    assert BatchNorm()._fusable(tf.zeros((4, 2, 2, 3)), True, None)
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(dense_bn(x, training=True), (x - x.mean(0)) / np.sqrt(
        x.var(0) + 1e-3), rtol=1e-4, atol=1e-5)


def test_pointwise_conv_training_path_equals_the_convolution():
    x = RNG.normal(size=(3, 5, 4, 6)).astype(np.float32)
    dy = RNG.normal(size=(3, 5, 4, 8)).astype(np.float32)
    layer = PointwiseConv2D(8, 1, padding="same", activation="relu")
    layer.build(x.shape)
    assert layer._as_matmul(True) and not layer._as_matmul(False)
    kernel, bias = layer.kernel.numpy()[0, 0], RNG.normal(size=8).astype(np.float32)
    layer.bias.assign(bias)
    pre = x.reshape(-1, 6) @ kernel + bias
    mask = pre > 0
    dpre = dy.reshape(-1, 8) * mask

    @tf.function
    def step(x, training):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * dy)
        return (y,) + tuple(tape.gradient(loss, [x, layer.kernel, layer.bias]))
    for training in (True, False):        # the matmul (training) and convolution paths
        y, dx, dk, db = (np.asarray(v) for v in step(tf.constant(x), training))
        np.testing.assert_allclose(y, (pre * mask).reshape(3, 5, 4, 8), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx, (dpre @ kernel.T).reshape(x.shape), rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(dk[0, 0], x.reshape(-1, 6).T @ dpre, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(db, dpre.sum(0), rtol=1e-4, atol=1e-4)
    assert not PointwiseConv2D(4, 3)._as_matmul(True)          # 3x3: always the convolution
    assert not PointwiseConv2D(4, 1, strides=2)._as_matmul(True)


def _step(layer, x, dy, training):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * dy)
        return (y,) + tuple(tape.gradient(loss, [x, layer.kernel, layer.bias]))
    return [np.asarray(v) for v in step(tf.constant(x))]


@pytest.mark.parametrize("kernel,shape", [(3, (2, 6, 5, 4)), (7, (2, 9, 8, 3))])
def test_conv_training_path_equals_keras_with_the_bias_gradient_summed(kernel, shape):
    x = RNG.normal(size=shape).astype(np.float32)
    dy = RNG.normal(size=shape[:3] + (6,)).astype(np.float32)
    layer = Conv2D(6, kernel, padding="same", activation="relu")
    layer.build(shape)
    layer.bias.assign(RNG.normal(size=6).astype(np.float32))
    train, infer = _step(layer, x, dy, True), _step(layer, x, dy, False)   # infer: Keras' own
    for got, expected in zip(train, infer):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(train[3], (dy * (train[0] > 0)).reshape(-1, 6).sum(0),
                               rtol=1e-4, atol=1e-4)       # ReLU'(pre) * dy, summed in NumPy


def test_dense_training_path_equals_the_formula():
    x, dy = RNG.normal(size=(7, 5)).astype(np.float32), RNG.normal(size=(7, 3)).astype(np.float32)
    layer = Dense(3)
    layer.build(x.shape)
    layer.bias.assign(RNG.normal(size=3).astype(np.float32))
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    for training in (True, False):
        y, dx, dk, db = _step(layer, x, dy, training)
        np.testing.assert_allclose(y, x @ kernel + bias, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx, dy @ kernel.T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dk, x.T @ dy, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(db, dy.sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make,shape", [
    (lambda: PointwiseConv2D(8, 1, padding="same"), (16, 64, 64, 4)),
    (lambda: Conv2D(8, 3, padding="same"), (16, 64, 64, 4)),
    (lambda: Dense(8), (65536, 4))])
def test_bias_gradient_is_summed_in_float32_under_mixed_bfloat16(make, shape):
    """TensorFlow's CPU BiasAddGrad sums bfloat16 in bfloat16: 65,536 values in [0, 1) gave
    256 for a sum near 32,800 (Keras' Conv2D and Dense). kreid's layers must give the
    float32 sum, rounded to bfloat16 once (relative error <= 2^-8)."""
    x = RNG.normal(size=shape).astype(np.float32)
    dy = RNG.uniform(0, 1, size=shape[:-1] + (8,)).astype(np.float32)
    with precision.policy("mixed_bfloat16"):
        layer = make()
    layer.build(shape)
    db = _step(layer, x, dy, True)[3]
    expected = dy.reshape(-1, 8).astype(np.float64).sum(0)
    np.testing.assert_allclose(db, expected, rtol=2 ** -8)


@pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")),
                    reason="GPUs sum bias gradients in float32: nothing to name")
def test_bfloat16_keras_biases_are_named():
    inputs = keras.Input((8, 8, 3))
    with precision.policy("mixed_bfloat16"):
        y = keras.layers.Conv2D(4, 3, name="keras_conv")(inputs)
        y = Conv2D(4, 3, name="kreid_conv")(keras.layers.Conv2D(4, 1, use_bias=False)(y))
        y = PointwiseConv2D(4, 1, name="kreid_pw")(keras.layers.DepthwiseConv2D(3, name="dw")(y))
        into_bn = keras.layers.Conv2D(4, 1, name="into_bn")
        y = keras.layers.BatchNormalization()(into_bn(y))
        frozen = keras.layers.BatchNormalization(name="frozen_bn")
        frozen.trainable = False
        y = frozen(keras.layers.Conv2D(4, 1, name="into_frozen_bn")(y))
        z = keras.layers.Conv2D(4, 1, name="into_bn_and_add")(y)
        y = keras.layers.Add()([keras.layers.BatchNormalization()(z), z])
        y = keras.layers.BatchNormalization()(keras.layers.Conv2D(4, 1, name="into_bn_off")(y),
                                              training=False)
        inner_in = keras.Input((2, 2, 4))
        inner = keras.Model(inner_in, keras.layers.BatchNormalization()(
            keras.layers.Conv2D(4, 1, name="inner_into_bn")(inner_in)))
        y = inner(y, training=False)
        y = keras.layers.Conv2D(4, 1, data_format="channels_first", name="first")(y)
        y = keras.layers.BatchNormalization()(y)
        cut = keras.layers.Conv2D(4, 1, name="into_bn_and_out")(y)
        y = keras.layers.BatchNormalization()(cut)
        model = keras.Model(inputs, [Dense(2, name="kreid_dense")(keras.layers.Flatten()(y)),
                                     cut])
    assert sorted(precision.check_biases(model)) == [
        "dw", "first", "inner_into_bn", "into_bn_and_add", "into_bn_and_out", "into_bn_off",
        "into_frozen_bn", "keras_conv"]
    # read in another model only by a norm: this model's own reads decide
    assert "into_bn" in precision.check_biases(keras.Model(inputs, into_bn.output))
    assert precision.check_biases(keras.Model(inner_in, inner.output)) == []


def test_a_bias_before_a_training_batch_norm_has_a_zero_gradient():
    """Why check_biases passes over a bias read only by a training batch norm: the norm's
    output ignores a per-channel constant, so the bias gradient is zero (float64 here),
    while the kernel's is not."""
    x = RNG.normal(size=(4, 6, 5, 3))
    dy = RNG.normal(size=(4, 6, 5, 4))
    conv = keras.layers.Conv2D(4, 3, padding="same", dtype="float64")
    norm = keras.layers.BatchNormalization(dtype="float64")
    conv.build(x.shape)
    conv.bias.assign(RNG.normal(size=4))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(norm(conv(tf.constant(x)), training=True) * dy)
    dk, db = tape.gradient(loss, [conv.kernel, conv.bias])
    assert np.abs(np.asarray(db)).max() < 1e-12 < np.abs(np.asarray(dk)).max()


@pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")),
                    reason="GPUs sum bias gradients in float32: nothing to name")
@pytest.mark.parametrize("name,kwargs", [("trinet", {}),
                                         ("resnet50_reid", {"ibn": True, "se": True})])
def test_resnet50_models_name_no_bias_under_bfloat16(name, kwargs):
    """TriNet's Keras ResNet-50 feeds every biased convolution into a batch norm; kreid's
    ResNet-50 (IBN's sliced norms, SE's convolutions) uses kreid's layers."""
    from kreid import models

    with precision.policy("mixed_bfloat16"):
        model = models.build(name, input_shape=(64, 32, 3), embedding_dim=8, **kwargs)
    assert precision.check_biases(model) == []
    assert model.get_layer("backbone").get_layer("conv1_conv").compute_dtype == "bfloat16"
    if name == "resnet50_reid":
        se = model.get_layer("backbone").get_layer("conv4_block1_se_expand")
        assert isinstance(se, Conv2D) and se.use_bias


@pytest.mark.parametrize("shape", [(2, 6, 4, 3), (2, 7, 5, 2), (1, 1, 1, 1), (2, 2, 3, 1)])
def test_pool_trains_with_minus_inf_padding_and_the_same_values_and_gradients(shape):
    """Training pads with -inf (one Pad), inference repeats the border (no infinities in
    the exported graph): after Table 6's max-pool both give the same values and gradients,
    and the gradient reaches each window's maximum, checked in NumPy."""
    x = RNG.normal(size=shape).astype(np.float32)
    inputs = keras.Input(shape[1:])
    pool = keras.Model(inputs, max_pool(inputs, "p"))
    padded = EdgePad2D()(x, training=True).numpy()
    assert np.isneginf(padded[:, 0]).all() and np.isneginf(padded[:, :, -1]).all()
    results = []
    for training in (True, False):
        with tf.GradientTape() as tape:
            xt = tf.constant(x)
            tape.watch(xt)
            y = pool(xt, training=training)
            loss = tf.reduce_sum(y * np.arange(1, y.shape.num_elements() + 1, dtype=np.float32
                                               ).reshape(y.shape))
        results.append((y.numpy(), tape.gradient(loss, xt).numpy()))
    (y_train, dx_train), (y_infer, dx_infer) = results
    np.testing.assert_array_equal(y_train, y_infer)
    np.testing.assert_array_equal(dx_train, dx_infer)
    h, w = shape[1:3]
    expected_dx, weight = np.zeros_like(x), 1.0
    for n in range(shape[0]):                      # in y's C order: n, i, j, c
        for i in range((h - 1) // 2 + 1):
            for j in range((w - 1) // 2 + 1):
                for c in range(shape[3]):
                    r0, c0 = max(2 * i - 1, 0), max(2 * j - 1, 0)
                    window = x[n, r0:2 * i + 2, c0:2 * j + 2, c]
                    np.testing.assert_equal(y_train[n, i, j, c], window.max())
                    r, q = np.unravel_index(window.argmax(), window.shape)
                    expected_dx[n, r0 + r, c0 + q, c] += weight
                    weight += 1
    np.testing.assert_allclose(dx_train, expected_dx)


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (2, 1, 1, 2), (1, 2, 3, 1)])
def test_edge_pad_repeats_the_borders_in_inference(shape):
    x = RNG.normal(size=shape).astype(np.float32)
    g = RNG.normal(size=(shape[0], shape[1] + 2, shape[2] + 2, shape[3])).astype(np.float32)
    rows = np.clip(np.arange(-1, shape[1] + 1), 0, shape[1] - 1)     # the row each copies
    cols = np.clip(np.arange(-1, shape[2] + 1), 0, shape[2] - 1)
    expected_y = x[:, rows][:, :, cols]
    expected_dx = np.zeros_like(x)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            expected_dx[:, r, c] += g[:, i, j]

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = EdgePad2D()(x)
            loss = tf.reduce_sum(y * g)
        return y, tape.gradient(loss, x)
    y, dx = step(tf.constant(x))
    np.testing.assert_array_equal(np.asarray(y), expected_y)
    np.testing.assert_allclose(np.asarray(dx), expected_dx, rtol=1e-5, atol=1e-6)


def test_layers_round_trip_through_a_saved_model(tmp_path):
    inputs = keras.Input((4, 4, 3))
    y = keras.layers.MaxPooling2D(3, 2, name="pool")(EdgePad2D(name="pad")(inputs))
    y = BatchNorm(name="bn")(Conv2D(4, 3, padding="same", name="conv")(
        PointwiseConv2D(5, 1, name="pw")(y)))
    model = keras.Model(inputs, Dense(3, name="dense")(keras.layers.Flatten(name="flat")(y)))
    trained = model(np.ones((2, 4, 4, 3), np.float32), training=True)  # moves the statistics
    assert np.isfinite(np.asarray(trained)).all()           # the -inf border stays in the pool
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert [type(l).__name__ for l in loaded.layers[1:]] == [
        "EdgePad2D", "MaxPooling2D", "PointwiseConv2D", "Conv2D", "BatchNorm", "Flatten", "Dense"]
    assert type(loaded.get_layer("conv")) is Conv2D and type(loaded.get_layer("dense")) is Dense
    x = RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)
    expected = np.asarray(model(x))
    assert np.isfinite(expected).all() and np.isfinite(model.get_layer("bn").moving_mean).all()
    np.testing.assert_allclose(loaded(x), expected, rtol=1e-6)
