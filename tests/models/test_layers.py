"""kreid.models.layers (fused-BN and matmul training paths) and LuNet's edge-pad gradient:
the same values, gradients and moving statistics as Keras' own layers, computed in NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kreid.models.layers import BatchNorm, PointwiseConv2D
from kreid.models.lunet import EdgePad2D

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


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (2, 1, 1, 2), (1, 2, 3, 1)])
def test_edge_pad_gradient_folds_the_borders(shape):
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
    y = BatchNorm(name="bn")(PointwiseConv2D(5, 1, name="pw")(EdgePad2D(name="pad")(inputs)))
    model = keras.Model(inputs, y)
    model(np.ones((2, 4, 4, 3), np.float32), training=True)     # moves the statistics
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert [type(l).__name__ for l in loaded.layers[1:]] == ["EdgePad2D", "PointwiseConv2D",
                                                              "BatchNorm"]
    x = RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
