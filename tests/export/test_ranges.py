"""int8 activation ranges (kreid.export.ranges) against brute-force quantization in NumPy."""

import json
import os

import keras
import numpy as np
import pytest

from kreid.export import convert, formats, ranges


def _quantization_mse(x, lo, hi):
    """TFLite's 8-bit affine quantization of ``x`` on [lo, hi], written out: scale, zero
    point nudged onto the grid, round, clip to 256 levels, dequantize; the mean squared
    error."""
    scale = (hi - lo) / 255.0
    zero = np.round(-lo / scale)
    q = np.clip(np.round(x / scale) + zero, 0, 255)
    return float(np.mean(((q - zero) * scale - x) ** 2))


def test_range_mse_matches_brute_force_quantization():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_t(3, 60_000), np.zeros(20_000)])   # heavy tails + zeros
    los, his = np.array([x.min(), -6.0, -3.0, -1.0]), np.array([x.max(), 8.0, 2.5, 0.7])
    fast = ranges.range_mse(x, los, his)
    assert fast.shape == (4, 4)
    for i, lo in enumerate(los):
        for j, hi in enumerate(his):
            assert fast[i, j] == pytest.approx(_quantization_mse(x, lo, hi), rel=0.1), (lo, hi)


def test_mse_range_clips_a_heavy_tail_and_beats_minmax():
    x = np.random.default_rng(1).standard_t(3, 200_000)
    lo, hi = ranges.clipped_range(x, "mse")
    assert hi < 0.9 * x.max() and lo > 0.9 * x.min()
    assert _quantization_mse(x, lo, hi) < 0.8 * _quantization_mse(x, x.min(), x.max())
    # no range of the grid, by brute force, is better by more than the rounding model's slack
    grid = [(a * x.min(), b * x.max()) for a in ranges.ALPHAS[::3] for b in ranges.ALPHAS[::3]]
    best = min(_quantization_mse(x, *r) for r in grid)
    assert _quantization_mse(x, lo, hi) <= 1.05 * best
    # exact bounds from elsewhere (a sample missed the extremes) widen the candidates
    assert ranges.clipped_range(x, "minmax", (2 * x.min(), 2 * x.max())) == (2 * x.min(),
                                                                            2 * x.max())


def test_mse_keeps_the_range_of_a_tensor_without_tails():
    x = np.random.default_rng(2).uniform(0.0, 6.0, 50_000)      # a ReLU6 output
    lo, hi = ranges.clipped_range(x, "mse")
    assert lo == 0.0 and hi >= 0.95 * x.max()


def test_minmax_and_percentile_contain_zero():
    x = np.random.default_rng(3).uniform(1.0, 5.0, 10_000)
    assert ranges.clipped_range(x, "minmax") == (0.0, pytest.approx(x.max()))
    lo, hi = ranges.clipped_range(x, "percentile")
    assert lo == 0.0 and hi == pytest.approx(np.percentile(x, 99.99))
    y = -x
    assert ranges.clipped_range(y, "percentile") == (pytest.approx(np.percentile(y, 0.01)), 0.0)
    assert ranges.clipped_range(np.zeros(5), "mse") == (0.0, 0.0)


def test_bad_method_and_values_are_refused():
    with pytest.raises(ValueError,
                       match="must be one of minmax, percentile, mse, image_mse, got 'kl'"):
        ranges.clipped_range(np.ones(3), "kl")
    with pytest.raises(ValueError, match="finite"):
        ranges.clipped_range(np.array([1.0, np.nan]), "mse")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small conv net and heavy-tailed calibration images: long-tailed activations."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(6)(x))
    rng = np.random.default_rng(0)
    cal = rng.laplace(0.0, 0.3, (40, 16, 8, 3)).astype(np.float32)
    return model, cal, tmp_path_factory.mktemp("ranges")


def _quantization(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    return {d["name"]: d["quantization"] for d in interp.get_tensor_details()
            if d["quantization"][0] and len(d["shape"]) >= 2}


def _scales(path):
    return {name: q[0] for name, q in _quantization(path).items()}


def test_samples_are_the_activations_of_the_calibrated_model(tiny):
    """Independent of the clipping: the ranged tensors are operator outputs holding no
    data, their samples lie inside TFLite's recorded range, and the output's samples are
    the Keras model's embeddings."""
    from tensorflow.lite.tools import flatbuffer_utils

    model, cal, tmp = tiny
    calibrated = convert.calibrated_tflite(convert.saved_model(model, str(tmp / "sm0")), cal)
    fb = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    graph = fb.subgraphs[0]
    recorded = ranges.recorded_ranges(calibrated)
    outputs = {int(t) for op in graph.operators for t in op.outputs}
    assert recorded and set(recorded) <= outputs
    assert not set(recorded) & {int(i) for i in graph.inputs}
    for index in recorded:
        data = fb.buffers[graph.tensors[index].buffer].data
        assert data is None or len(data) == 0          # not a weight
    samples = ranges.activation_samples(calibrated, cal, per_image=64)
    for index, (lo, hi) in recorded.items():
        assert lo - 1e-5 <= samples[index].min() and samples[index].max() <= hi + 1e-5
    out = int(graph.outputs[0])
    np.testing.assert_allclose(samples[out].reshape(len(cal), -1),
                               model(cal, training=False).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="must contain 0"):
        ranges.range_mse(np.ones(4), np.array([0.5]), np.array([2.0]))


def test_unclipped_ranges_quantize_as_the_converter_does(tiny):
    """minmax through kreid's calibrate -> quantize path gives the converter's own model."""
    import tensorflow as tf

    model, cal, tmp = tiny
    sm = convert.saved_model(model, str(tmp / "sm1"))
    direct = convert.tflite(sm, str(tmp / "direct.tflite"), "int8", cal, int8_ranges="minmax")
    data, summary = ranges.clip(convert.calibrated_tflite(sm, cal), cal, "minmax", tf.int8)
    assert summary["clipped"] == 0
    (tmp / "split.tflite").write_bytes(data)
    assert _quantization(direct) == _quantization(str(tmp / "split.tflite"))


def test_clipped_ranges_reach_the_int8_model(tiny):
    model, cal, tmp = tiny
    spec = convert.ExportSpec((16, 8), "none", "tiny")
    paths = {m: formats.export_all(model, str(tmp / m), spec, ["tflite_int8"], cal,
                                   int8_ranges=m)["tflite_int8"] for m in ("minmax", "mse")}
    for method, path in paths.items():
        meta = json.load(open(path + ".json"))
        assert meta["int8_ranges"] == method and meta["calibration_fidelity"] > 0.9
    sidecar = json.load(open(paths["mse"] + ".json"))["int8_ranges_summary"]
    assert sidecar["method"] == "mse" and sidecar["tensors"] >= 3 and sidecar["clipped"] >= 1
    before, after = _scales(paths["minmax"]), _scales(paths["mse"])
    inputs = {n for n in before if n.startswith("serving_default")}
    assert len(inputs) == 1 and all(after[n] == before[n] for n in inputs)
    shared = sorted(set(before) & set(after) - inputs)
    assert shared
    # the graph input keeps TFLite's range; every activation's step is no coarser, some finer
    assert all(after[n] <= before[n] * (1 + 1e-6) for n in shared)
    assert any(after[n] < 0.99 * before[n] for n in shared)
    # and each is the step of the range clipped_range picks from the sampled values
    from tensorflow.lite.tools import flatbuffer_utils

    calibrated = convert.calibrated_tflite(convert.saved_model(model, str(tmp / "sm")), cal)
    names = flatbuffer_utils.convert_bytearray_to_object(calibrated).subgraphs[0].tensors
    samples = ranges.activation_samples(calibrated, cal)
    for index, bounds in ranges.recorded_ranges(calibrated).items():
        name = names[index].name.decode()
        if name in after:
            lo, hi = ranges.clipped_range(samples[index], "mse", bounds)
            assert after[name] == pytest.approx((hi - lo) / 255, rel=1e-5), name
            assert before[name] == pytest.approx((bounds[1] - min(bounds[0], 0)) / 255,
                                                 rel=1e-5), name
    from kreid_edge import load_embedder

    reference = model(cal[:8], training=False).numpy()
    out = load_embedder(paths["mse"])(cal[:8])
    cos = np.sum(out * reference, 1) / (np.linalg.norm(out, axis=1)
                                        * np.linalg.norm(reference, axis=1))
    assert cos.min() > 0.95


def test_unknown_int8_ranges_writes_nothing(tiny):
    model, cal, tmp = tiny
    spec = convert.ExportSpec((16, 8), "none", "tiny")
    with pytest.raises(ValueError, match="int8_ranges must be one of minmax, percentile, mse"):
        formats.export_all(model, str(tmp / "bad"), spec, ["tflite_int8"], cal,
                           int8_ranges="entropy")
    assert not os.path.exists(tmp / "bad" / "tiny.int8.tflite")


def test_percentile_ranges_with_float_input_and_output(tiny):
    model, cal, tmp = tiny
    spec = convert.ExportSpec((16, 8), "none", "tiny")
    path = formats.export_all(model, str(tmp / "pct"), spec, ["tflite_int8"], cal,
                              io_type="float32", int8_ranges="percentile")["tflite_int8"]
    from ai_edge_litert.interpreter import Interpreter

    from kreid_edge import load_embedder

    interp = Interpreter(model_path=path)
    assert interp.get_input_details()[0]["dtype"] == np.float32
    assert interp.get_output_details()[0]["dtype"] == np.float32
    assert json.load(open(path + ".json"))["int8_ranges_summary"]["method"] == "percentile"
    reference = model(cal[:8], training=False).numpy()
    out = load_embedder(path)(cal[:8])
    cos = np.sum(out * reference, 1) / (np.linalg.norm(out, axis=1)
                                        * np.linalg.norm(reference, axis=1))
    assert cos.min() > 0.95


def test_a_collapsed_int8_file_is_reported(tmp_path, caplog):
    """An embedding with a large constant offset in one dimension: the int8 output range
    must span it, its steps swallow every other dimension's variation and the file returns
    one embedding for every image. The cosine to float stays near 1 (the offset dominates);
    the fidelity (against the float embeddings, per image) and the warning say what happened."""
    import logging

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    dense = keras.layers.Dense(6)
    model = keras.Model(inputs, dense(x))
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 1e-3, bias + np.array([5000.0, 0, 0, 0, 0, 0])])
    cal = np.random.default_rng(0).uniform(0, 1, (24, 16, 8, 3)).astype(np.float32)
    spec = convert.ExportSpec((16, 8), "none", "offset")
    with caplog.at_level(logging.WARNING, logger="kreid.export.formats"):
        path = formats.export_all(model, str(tmp_path), spec, ["tflite_int8"], cal,
                                  int8_ranges="minmax")["tflite_int8"]
    fidelity = json.load(open(path + ".json"))["calibration_fidelity"]
    assert fidelity < 0.5
    assert any("has lost the model" in r.getMessage() and path in r.getMessage()
               for r in caplog.records)
    from kreid_edge import load_embedder

    out = np.asarray(load_embedder(path)(cal), np.float64)
    ref = np.asarray(model(cal, training=False), np.float64)
    cos = np.sum(out * ref, 1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 0.99          # what a cosine check alone would have passed
    spread = np.sum((ref - np.median(ref, 0)) ** 2, 1)
    expected = np.median(1 - np.sum((out - ref) ** 2, 1) / spread)    # on 24 of 24 images
    assert fidelity == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_a_collapse_behind_a_few_outlier_images_is_reported(tmp_path, caplog):
    """The CUHK03 LuNet case: 2 of 24 calibration images drive the activations 300x above
    the rest, the int8 ranges span them, and every typical image gets one embedding. An
    R^2 over all images is dominated by the outliers (which quantize well) and passes;
    the per-image median must not."""
    import logging

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(6)(x))
    cal = np.random.default_rng(0).uniform(0, 1, (24, 16, 8, 3)).astype(np.float32)
    cal[[5, 17]] *= 300.0
    spec = convert.ExportSpec((16, 8), "none", "outliers")
    with caplog.at_level(logging.WARNING, logger="kreid.export.formats"):
        path = formats.export_all(model, str(tmp_path), spec, ["tflite_int8"], cal,
                                  int8_ranges="minmax")["tflite_int8"]
    fidelity = json.load(open(path + ".json"))["calibration_fidelity"]
    from kreid_edge import load_embedder

    out, ref = load_embedder(path)(cal), model(cal, training=False).numpy()
    r2 = 1 - np.sum((out - ref) ** 2) / np.sum((ref - ref.mean(0)) ** 2)
    assert r2 > 0.9                  # what the all-images R^2 would have said
    assert fidelity < 0.5
    assert any("has lost the model" in r.getMessage() and path in r.getMessage()
               for r in caplog.records)


def test_image_mse_is_the_mean_of_each_images_relative_error():
    """image_mse against brute-force quantization of each image on its own, divided by the
    image's mean square; an all-zero image adds nothing to the sum but counts as an image."""
    rng = np.random.default_rng(3)
    values = np.maximum(rng.normal(0.2, 1.0, (5, 300)), 0) * np.array([[1], [2], [50], [1], [3]])
    values[3] = 0.0
    los, his = np.array([0.0, -0.5]), np.array([1.0, 4.0, 150.0])
    got = ranges.image_mse(values, los, his)
    for i, lo in enumerate(los):
        for j, hi in enumerate(his):
            expected = np.mean([_quantization_mse(v, lo, hi) / np.mean(v * v) if v.any() else 0.0
                                for v in values])
            assert got[i, j] == pytest.approx(expected, rel=0.1), (lo, hi)
    with pytest.raises(ValueError, match=r"image_mse needs the values as \[images, positions\]"):
        ranges.clipped_range(values.ravel(), "image_mse")


def test_small_values_count_their_own_square():
    """range_mse(small_exact=True) against brute force where many values lie far below
    one step (where step^2 / 12 alone doubles the error here); no set of values gets an
    error above its mean square, and a nearly blank image cannot narrow image_mse's range."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, 3000), rng.normal(0, 1e-3, 3000), np.zeros(100)])
    los, his = np.array([-4.0, -1.0, -0.3, 0.0]), np.array([0.0, 0.3, 1.0, 4.0])
    fast = ranges.range_mse(x, los, his, small_exact=True)
    for i, lo in enumerate(los):
        for j, hi in enumerate(his):
            if hi > lo:
                assert fast[i, j] == pytest.approx(_quantization_mse(x, lo, hi), rel=0.02)
    assert (fast <= np.mean(x * x)).all()
    images = rng.uniform(0, 1, (24, 256))
    images[3] = 0.0
    images[3, :5] = 1e-4                # one nearly blank calibration image
    assert ranges.clipped_range(images, "image_mse")[1] > 0.9 * images.max()
    assert ranges.clipped_range(-images, "image_mse")[0] < 0.9 * -images.max()   # hi = 0
    blank = np.concatenate([np.zeros(999), [-1e-3]])
    assert ranges.range_mse(blank, np.array([-10.0]), np.array([0.0]), small_exact=True)[
        0, 0] <= np.mean(blank ** 2)


def test_image_mse_gives_outlier_images_up_for_the_rest():
    """Two of 24 images at 300x the rest: mse spends the range on them, and every typical
    image rounds to a step or two; image_mse clips them (to about a quarter of the span
    here: each clipped outlier image costs it at most 1) and keeps the rest."""
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, (24, 256))
    values[[5, 17]] *= 300.0
    typical = np.delete(values, [5, 17], axis=0)

    def typical_error(lo, hi):
        return np.mean([_quantization_mse(v, lo, hi) / np.mean(v * v) for v in typical])

    wide = ranges.clipped_range(values, "mse")
    narrow = ranges.clipped_range(values, "image_mse")
    assert wide[1] > 0.9 * values.max() and narrow[1] < 0.5 * wide[1]
    assert typical_error(*narrow) < 0.1 * typical_error(*wide)


def test_image_mse_keeps_a_model_that_outlier_images_collapse(tmp_path, caplog):
    """The CUHK03 LuNet case inside the network: a channel that is zero in every image but
    two drives their embeddings about 300x above the rest (the graph input keeps its range).
    TFLite's ranges collapse the typical images and the exporter warns; image_mse keeps
    them (no warning; fidelity -0.17 against 0.77 here)."""
    import logging

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 8, 3))
    conv = keras.layers.Conv2D(8, 3, activation="relu")
    x = keras.layers.GlobalAveragePooling2D()(conv(inputs))
    model = keras.Model(inputs, keras.layers.Dense(6)(x))
    kernel, bias = conv.get_weights()
    kernel[:, :, 2] = 12.0 * np.abs(kernel[:, :, 2])     # embeddings about 300x the rest
    conv.set_weights([kernel, bias])
    rng = np.random.default_rng(0)
    cal = (rng.uniform(0, 1, (24, 16, 8, 3)) * rng.uniform(0.1, 1, (24, 1, 1, 3))).astype(
        np.float32)                                 # its own colour per image
    cal[..., 2] = 0.0
    cal[[5, 17], ..., 2] = 1.0
    spec = convert.ExportSpec((16, 8), "none", "inner")
    fidelity = {}
    for method in ("minmax", "image_mse"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kreid.export.formats"):
            path = formats.export_all(model, str(tmp_path / method), spec, ["tflite_int8"], cal,
                                      int8_ranges=method)["tflite_int8"]
        fidelity[method] = json.load(open(path + ".json"))["calibration_fidelity"]
        warned = any("has lost the model" in r.getMessage() for r in caplog.records)
        assert warned == (method == "minmax"), (method, fidelity)
        assert warned == any("try --int8_ranges=image_mse" in r.getMessage()
                             for r in caplog.records)
    assert fidelity["minmax"] < 0.5 and fidelity["image_mse"] > 0.65     # 0.77 measured
