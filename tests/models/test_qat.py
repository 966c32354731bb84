"""Quantization-aware training for Keras 3 (kreid.models.qat, #27): the fake-quant ops
against NumPy, batch-norm folding, the twin's placement of quantizers, and its TFLite
int8 file against the fake-quant Keras model."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kreid.models import qat


# ------------------------------------------------------------------ NumPy references
def _nudged(lo, hi, qmin, qmax):
    """TensorFlow's nudging (and TFLite's zero point): the range moved so that 0 is a
    level, for integer levels qmin..qmax."""
    scale = (hi - lo) / (qmax - qmin)
    zero = qmin - lo / scale
    zero = np.clip(np.floor(zero + 0.5), qmin, qmax)
    return (qmin - zero) * scale, (qmax - zero) * scale, scale, zero


def _fake_quant_np(x, lo, hi, qmin=0, qmax=255):
    """In float32 as TensorFlow's kernel computes it (a tie at half a level is then the
    same tie)."""
    nlo, nhi, scale, _ = (np.float32(v) for v in _nudged(np.float32(lo), np.float32(hi),
                                                         qmin, qmax))
    clamped = np.clip(np.asarray(x, np.float32), nlo, nhi)
    inv = np.float32(1.0) / scale
    return np.floor((clamped - nlo) * inv + np.float32(0.5)) * scale + nlo


@pytest.mark.parametrize("lo,hi", [(-1.0, 3.0), (0.0, 6.0), (-0.37, 0.91), (0.2, 1.0)])
def test_activation_fake_quant_against_numpy(lo, hi):
    x = np.concatenate([np.linspace(lo - 1, hi + 1, 997),        # clamping on both ends
                        [0.0, lo, hi]]).astype(np.float32)
    got = qat.fake_quant(tf.constant(x), lo, hi).numpy()
    want = _fake_quant_np(x, lo, hi)     # a range without 0 is moved to hold it: [0, hi-lo]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[-3] == 0.0                                # 0 is exact
    assert len(np.unique(got)) <= 256                    # 8 bits
    nlo, nhi, scale, zero = _nudged(lo, hi, 0, 255)
    assert np.isclose(got.min(), nlo, atol=1e-6) and np.isclose(got.max(), nhi, atol=1e-6)
    # rounding to the nearest level (halves up) inside the range
    inside = (x > nlo) & (x < nhi)
    assert np.all(np.abs(got[inside] - x[inside]) <= scale / 2 + 1e-6)


def test_weight_fake_quant_is_symmetric_per_output_channel():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 4, 5)).astype(np.float32) * np.array([0.01, 0.1, 1, 10, 0.5],
                                                                     np.float32)
    w[..., 4] = 0.0                                      # an all-zero channel stays zero
    got = qat.fake_quant_weights(tf.constant(w)).numpy()
    for c in range(5):
        bound = max(np.abs(w[..., c]).max(), 1e-12)
        scale = bound / 127.0                            # narrow range [-127, 127], zero 0
        want = np.clip(np.floor(w[..., c] / scale + 0.5), -127, 127) * scale
        np.testing.assert_allclose(got[..., c], want, atol=scale * 1e-4)
        levels = np.round(got[..., c] / scale)
        assert levels.min() >= -127 and levels.max() <= 127
    assert np.all(got[..., 4] == 0)
    # per channel: the small channel keeps its own resolution
    assert np.abs(got[..., 0] - w[..., 0]).max() <= 0.01 * np.abs(w[..., 0]).max()


# ------------------------------------------------------------------ the twin
def _tiny(with_pre_bn=True, dense_head=True):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 8, 3), name="images")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    y = keras.layers.ReLU(6.0, name="relu6")(y)
    x = keras.layers.Add(name="add")([x, y])
    if with_pre_bn:                                      # a norm after no convolution
        x = keras.layers.BatchNormalization(name="pre_bn")(x)
    x = keras.layers.LeakyReLU(0.3, name="leaky")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if dense_head:
        x = keras.layers.Dense(16, name="fc")(x)
        x = keras.layers.BatchNormalization(name="bn3")(x)
        x = keras.layers.ReLU(name="relu3")(x)
    out = keras.layers.Dense(6, name="embedding")(x)
    model = keras.Model(inputs, out, name="tiny")
    rng = np.random.default_rng(2)
    for layer in model.layers:                           # norms as a trained net has them
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 2.0, n))
            layer.beta.assign(rng.normal(0.0, 0.3, n))
            layer.moving_mean.assign(rng.normal(0.0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.3, 3.0, n))
    return model


def _images(n=24, seed=0):
    return np.random.default_rng(seed).random((n, 16, 8, 3)).astype(np.float32)


def test_folding_the_norms_is_the_float_model_in_inference():
    model = _tiny()
    x = _images()
    twin = qat.quantize_model(model)
    names = {type(l).__name__ for l in twin.layers}
    assert {"FoldedConv", "QuantizedBatchNorm", "FakeQuant"} <= names
    folded = [l for l in twin.layers if isinstance(l, qat.FoldedConv)]
    assert sum(l.bn is not None for l in folded) == 3           # conv, depthwise, dense
    np.testing.assert_allclose(qat.float_view(twin)(x).numpy(),
                               model(x, training=False).numpy(), rtol=1e-4, atol=1e-5)
    # the twin shares the float model's weights: no new weight but the ranges
    own = {id(v) for v in model.weights}
    extra = [v for v in twin.weights if id(v) not in own]
    assert all(v.path.split("/")[-1] in ("lo", "hi") for v in extra)
    assert len(extra) == 2 * len(qat.quantizers(twin))


def test_quantizers_sit_where_the_converter_quantizes():
    """Input, every op output, except a ReLU's producer (fused) and scale-keeping ops; a
    norm after no convolution is a MUL then an ADD, each quantized."""
    twin = qat.quantize_model(_tiny())
    names = sorted(q.name for q in qat.quantizers(twin))
    # not conv/bn1 (ReLU fused), dw/bn2 (ReLU6 fused), pool (keeps its input's scale),
    # fc/bn3 (ReLU fused); the add's output is quantized (a norm follows, not a ReLU)
    assert names == sorted(["input_quant", "relu1_quant", "relu6_quant", "add_quant",
                            "pre_bn_quantized_mul_quant", "pre_bn_quant", "leaky_quant",
                            "gap_quant", "relu3_quant", "embedding_quant"])
    plain = qat.quantize_model(_tiny(with_pre_bn=False))
    assert "add_quant" in {q.name for q in qat.quantizers(plain)}


def test_calibration_sets_the_export_ranges():
    from kreid.export import ranges

    model, x = _tiny(), _images(32)
    twin = qat.quantize_model(model)
    got = qat.calibrate(twin, x)
    q = next(q for q in qat.quantizers(twin) if q.name == "gap_quant")
    gap = keras.Model(model.input, model.get_layer("gap").output)
    values = gap(x, training=False).numpy().reshape(len(x), -1)
    want = ranges.clipped_range(values, "image_mse", (values.min(), values.max()))
    np.testing.assert_allclose(got[q.name], want, rtol=1e-5)
    assert (float(q.lo.numpy()), float(q.hi.numpy())) == pytest.approx(want, rel=1e-5)
    assert got["input_quant"] == pytest.approx((0.0, float(x.max())), abs=0.02)


def _tflite_int8(model, tmp_path):
    sm = str(tmp_path / "qat.savedmodel")
    model.export(sm, format="tf_saved_model", verbose=False)
    from kreid.export import convert

    return convert.tflite(sm, str(tmp_path / "m.tflite"), "fake_quant")


def _run_int8(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(i["index"], list(x.shape))
    it.allocate_tensors()
    s, z = i["quantization"]
    it.set_tensor(i["index"], np.clip(np.round(x / s + z), -128, 127).astype(np.int8))
    it.invoke()
    so, zo = o["quantization"]
    return (it.get_tensor(o["index"]).astype(np.float64) - zo) * so, so, it


@pytest.mark.parametrize("pre_bn", [False, True])
def test_tflite_int8_matches_the_fake_quant_model_within_one_step(tmp_path, pre_bn):
    """No calibration: the converter takes the fake-quant ranges; every op integer."""
    model = _tiny(with_pre_bn=pre_bn)
    x = _images(32)
    twin = qat.quantize_model(model)
    qat.calibrate(twin, x[:16])
    path = _tflite_int8(twin, tmp_path)
    got, step, it = _run_int8(path, x[16:])
    want = twin(x[16:]).numpy()
    details = it.get_tensor_details()
    for op in it._get_ops_details():                         # noqa: SLF001
        if op["op_name"] == "DELEGATE":
            continue
        for index in list(op["inputs"]) + list(op["outputs"]):
            if index >= 0:
                assert details[index]["dtype"] in (np.int8, np.int32), (op, details[index])
    assert np.abs(got - want).max() <= step * 1.0001
    ops = {op["op_name"] for op in it._get_ops_details()}    # noqa: SLF001
    assert ("MUL" in ops) == pre_bn


def test_float_export_of_a_qat_model_has_no_quantization(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from kreid.export import convert, formats
    from kreid.training.artifacts import save_keras

    twin = qat.quantize_model(_tiny())
    qat.calibrate(twin, _images(8))
    path = save_keras(twin, str(tmp_path / "m.qat.keras"))
    from kreid.models import load_model

    model = load_model(path)
    assert qat.is_qat(model)
    x = _images(4)
    np.testing.assert_allclose(model(x).numpy(), twin(x).numpy(), rtol=1e-5, atol=1e-5)
    spec = convert.ExportSpec((16, 8), "scale", "tiny")
    assert "calibration_fidelity" not in json.load(open(formats.export_all(
        model, str(tmp_path / "bare"), spec, ["tflite_qat_int8"])["tflite_qat_int8"] + ".json"))
    paths = formats.export_all(model, str(tmp_path / "out"), spec,
                               ["tflite_float32", "tflite_qat_int8"], _images(8))
    interp = Interpreter(model_path=paths["tflite_float32"])
    ops = {op["op_name"] for op in interp._get_ops_details()}       # noqa: SLF001
    assert not ops & {"QUANTIZE", "DEQUANTIZE", "FAKE_QUANT"}
    assert all(d["dtype"] in (np.float32, np.int32) for d in interp.get_tensor_details())
    meta = json.load(open(paths["tflite_qat_int8"] + ".json"))
    assert meta["int8_ranges"] == "qat" and meta["calibration_fidelity"] > 0.9
    float_model = _tiny()
    with pytest.raises(ValueError, match="tflite_qat_int8: only of a quantization-aware"):
        formats.export_all(float_model, str(tmp_path / "f"), spec, ["tflite_qat_int8"])
    assert "tflite_qat_int8" not in formats.export_all(float_model, str(tmp_path / "g"), spec,
                                                       ["tflite_float32"])
    assert not os.path.exists(tmp_path / "f")


def test_what_qat_cannot_fold_is_named():
    inputs = keras.Input((8, 8, 4))
    out = keras.layers.Conv2D(4, 3, groups=2)(inputs)
    with pytest.raises(qat.QATError, match="conv2d.*without groups"):
        qat.quantize_model(keras.Model(inputs, out))
    inputs = keras.Input((8, 8, 4))
    out = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    with pytest.raises(qat.QATError, match="fused activation"):
        qat.quantize_model(keras.Model(inputs, out))
