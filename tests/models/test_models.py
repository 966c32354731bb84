"""Model registry: parameter counts, input sizes, serialisation, weight loading, freezing."""

import os

import keras
import numpy as np
import pytest

from kreid import models
from kreid.models import heads


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# Table 6 of Hermans et al. (supplement D), transcribed: convolutions as (kernel, in, out),
# "proj" = the 1x1 projection shortcut a bottleneck needs where n1 != n3, "pool" = 3x3/2.
def _bottleneck(n1, n2, n3):
    return ([("proj", 1, n1, n3)] if n1 != n3 else []) + [
        ("conv", 1, n1, n2), ("conv", 3, n2, n2), ("conv", 1, n2, n3)]


TABLE6_LAYERS = (
    [("conv", 7, 3, 128)] + _bottleneck(128, 32, 128) + ["pool"]
    + _bottleneck(128, 32, 128) + _bottleneck(128, 32, 128) + _bottleneck(128, 64, 256)
    + ["pool"] + _bottleneck(256, 64, 256) + _bottleneck(256, 64, 256) + ["pool"]
    + _bottleneck(256, 64, 256) + _bottleneck(256, 64, 256) + _bottleneck(256, 128, 512)
    + ["pool"] + _bottleneck(512, 128, 512) + _bottleneck(512, 128, 512) + ["pool"]
    + [("proj", 1, 512, 128), ("conv", 3, 512, 512), ("conv", 3, 512, 128)])


def test_lunet_is_table6_layer_by_layer():
    model = models.build("lunet", (128, 64, 3))
    backbone = model.get_layer("backbone")
    groups = []             # per block (name prefix), in graph order; a block's projection first
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kind = "proj" if layer.name.endswith("_proj") else "conv"
            entry = (kind, layer.kernel_size[0], int(layer.kernel.shape[2]), layer.filters)
        elif isinstance(layer, keras.layers.MaxPooling2D):
            assert layer.pool_size == (3, 3) and layer.strides == (2, 2)
            entry = "pool"
        else:
            continue
        prefix = layer.name.split("_")[0]
        if not groups or groups[-1][0] != prefix:
            groups.append((prefix, []))
        groups[-1][1].append(entry)
    got = [e for _, g in groups for e in sorted(g, key=lambda e: e == "pool" or e[0] != "proj")]
    assert got == TABLE6_LAYERS
    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert [(int(d.kernel.shape[0]), d.units) for d in dense] == [(1024, 512), (512, 128)]
    acts = [l for l in list(backbone.layers) + list(model.layers)
            if isinstance(l, (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.Activation))]
    assert acts and all(isinstance(a, keras.layers.LeakyReLU) and
                        abs(a.negative_slope - 0.3) < 1e-9 for a in acts)   # all leaky 0.3
    assert all(l.kernel_initializer.__class__.__name__ == "HeNormal" for l in backbone.layers
               if isinstance(l, keras.layers.Conv2D))
    assert all(d.kernel_initializer.__class__.__name__ == "GlorotUniform" for d in dense)
    assert f"{_trainable(model) / 1e6:.2f}" == "5.00"       # a consequence, not a target


def test_lunet_pool_pads_one_pixel_on_every_side():
    """Table 6: pool 3x3, stride 2, padding (1x1): the first window covers rows/cols -1..1."""
    from kreid.models.lunet import max_pool

    inputs = keras.Input((4, 4, 1))
    pool = keras.Model(inputs, max_pool(inputs, "p"))
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 2, 2] = 1.0
    out = pool(x).numpy()[0, :, :, 0]
    assert out.shape == (2, 2)
    assert out[0, 0] == 0.0 and out[1, 1] == 1.0           # "same" padding would give 1 at (0,0)
    x = -np.ones((1, 4, 4, 1), np.float32)                 # border repeat acts like -inf padding
    x[0, 0, 0] = -5.0
    assert (pool(x).numpy() == -1.0).all()


def test_lunet_has_5_00_million_parameters():
    model = models.build("lunet", (128, 64, 3))
    assert abs(_trainable(model) - 5.00e6) / 5.00e6 < 0.01
    assert model.get_layer("backbone").output.shape[-1] == 1024   # 4 x 2 x 128, Table 6
    layer_types = {type(l).__name__ for l in model.get_layer("backbone").layers}
    assert "MaxPooling2D" in layer_types and "LeakyReLU" in layer_types
    assert all(l.strides == (1, 1) for l in model.get_layer("backbone").layers
               if isinstance(l, keras.layers.Conv2D))              # max-pooling, no strides


@pytest.mark.parametrize("size,features", [((128, 64), 1024), ((64, 32), 256),
                                           ((256, 128), 4096), ((96, 48), 768)])
def test_lunet_at_other_sizes_flattens_what_the_pools_leave(size, features, caplog):
    """The paper is silent (Table 1 trains at 64x32): kreid keeps Table 6 and the first
    Linear takes ceil(H/32) x ceil(W/32) x 128 features; said in the log (#29)."""
    import logging

    from kreid.models import lunet

    assert lunet.flat_features(*size) == features
    with caplog.at_level(logging.INFO, logger="kreid.models.lunet"):
        model = models.build("lunet", (*size, 3))
    assert model.get_layer("backbone").output.shape[-1] == features
    assert tuple(model.get_layer("fc1").kernel.shape) == (features, 512)
    assert ("first Linear takes" in caplog.text) == (features != 1024)
    assert _trainable(model) == 5_001_408 + (features - 1024) * 512


def test_trinet_has_25_74_million_parameters():
    model = models.build("trinet", (256, 128, 3))
    assert abs(_trainable(model) - 25.74e6) / 25.74e6 < 0.01
    assert model.output.shape == (None, 128)


@pytest.mark.parametrize("name", ["lunet", "mobilenet_edge", "resnet_edge"])
@pytest.mark.parametrize("size", [(256, 128), (128, 64), (64, 32)])
def test_builds_at_reid_sizes(name, size):
    model = models.build(name, (*size, 3))
    out = model(np.zeros((2, *size, 3), np.float32), training=False)
    assert out.shape == (2, 128)


def test_resnet50_reid_variants():
    plain = models.build("resnet50_reid", (128, 64, 3))
    assert plain.output.shape == (None, 2048)
    c5 = plain.get_layer("backbone").get_layer("conv5_block3_out").output.shape
    assert c5[1:3] == (8, 4)                                     # last stride 1: 1/16
    s2 = models.build("resnet50_reid", (128, 64, 3), last_stride=2, bnneck=False)
    assert s2.get_layer("backbone").get_layer("conv5_block3_out").output.shape[1:3] == (4, 2)
    ibn = models.build("resnet50_reid", (64, 32, 3), ibn=True, se=True, embedding_dim=256)
    names = [l.name for l in ibn.get_layer("backbone").layers]
    assert "conv2_block1_1_bn_in" in names and "conv5_block1_1_bn" in names   # IBN in stages 2-4
    assert "conv3_block2_se_scale" in names
    assert ibn.output.shape == (None, 256)
    assert isinstance(plain.get_layer("bnneck"), keras.layers.BatchNormalization)


@pytest.mark.parametrize("name", ["mobilenet_edge", "resnet_edge", "mobilenet_v2"])
def test_edge_backbone_uses_int8_friendly_ops_only(name):
    model = models.build(name, (128, 64, 3))
    allowed = {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU",
               "Activation", "Add", "ZeroPadding2D", "GlobalAveragePooling2D", "Dense",
               "Functional", "Rescaling", "Multiply", "Flatten", "Dropout", "MaxPooling2D"}
    found = {type(l).__name__ for l in model.get_layer("backbone").layers}
    assert found <= allowed, found - allowed
    acts = {l.get_config().get("activation") for l in model.get_layer("backbone").layers
            if type(l).__name__ == "Activation"}
    assert acts <= {"relu", None}, acts
    caps = {l.max_value for l in model.get_layer("backbone").layers if type(l).__name__ == "ReLU"}
    assert caps == {6.0}, caps                                   # bounded: tight int8 ranges


def test_resnet_edge_layout():
    model = models.build("resnet_edge", (128, 64, 3))
    backbone = model.get_layer("backbone")
    assert backbone.get_layer("stage4_block2_out").output.shape[1:] == (8, 4, 256)  # last stride 1
    assert backbone.get_layer("stage3_block2_out").output.shape[1:] == (8, 4, 128)
    assert 2.9e6 < _trainable(model) < 3.1e6
    s2 = models.build("resnet_edge", (128, 64, 3), last_stride=2, widths=(16, 32), blocks=(1, 1))
    assert s2.get_layer("backbone").get_layer("stage2_block1_out").output.shape[1:] == (16, 8, 32)
    with pytest.raises(ValueError, match="last_stride"):
        models.build("resnet_edge", (128, 64, 3), last_stride=3)
    with pytest.raises(ValueError, match="same length"):
        models.build("resnet_edge", (128, 64, 3), widths=(16, 32), blocks=(1,))


@pytest.mark.parametrize("name,size,kwargs", [
    ("lunet", (64, 32), {}), ("mobilenet_edge", (64, 32), {}), ("resnet_edge", (64, 32), {}),
    ("mobilenet_v2", (64, 32), {}), ("resnet50_reid", (64, 32), {"ibn": True, "se": True})])
def test_save_load_round_trip(tmp_path, name, size, kwargs):
    model = models.build(name, (*size, 3), **kwargs)
    x = np.random.default_rng(0).random((2, *size, 3)).astype(np.float32)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-5)


def test_heads_round_trip(tmp_path):
    inputs = keras.Input((32,))
    labels = keras.Input((), dtype="int32")
    logits = heads.AngularMarginHead(7, scale=16.0, margin=0.3)(inputs, labels)
    attrs = heads.AttributeHeads(2, slice_dim=16)(inputs)
    model = keras.Model([inputs, labels], [logits, attrs])
    path = str(tmp_path / "heads.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(1).normal(size=(3, 32)).astype(np.float32)
    y = np.array([0, 3, 6], np.int32)
    for a, b in zip(loaded([x, y]), model([x, y])):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert loaded.layers[2].get_config()["margin"] == 0.3


def test_trinet_loads_a_local_weights_file(tmp_path):
    base = keras.applications.ResNet50(include_top=False, weights=None,
                                       input_shape=(64, 32, 3), pooling="avg")
    path = str(tmp_path / "resnet50_notop.weights.h5")
    base.save_weights(path)
    model = models.build("trinet", (64, 32, 3), weights=path)
    loaded = model.get_layer("backbone").get_layer("conv1_conv").get_weights()[0]
    np.testing.assert_array_equal(loaded, base.get_layer("conv1_conv").get_weights()[0])
    reid = models.build("resnet50_reid", (64, 32, 3), weights=path)
    np.testing.assert_array_equal(
        reid.get_layer("backbone").get_layer("conv4_block6_3_conv").get_weights()[0],
        base.get_layer("conv4_block6_3_conv").get_weights()[0])


def test_missing_or_bad_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        models.build("trinet", (64, 32, 3), weights=str(tmp_path / "nope.weights.h5"))
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="bad.weights.h5"):
        models.build("trinet", (64, 32, 3), weights=str(bad))


def test_freeze_backbone():
    model = models.build("lunet", (64, 32, 3))
    total = len(model.trainable_weights)
    models.freeze_backbone(model)
    head_only = len(model.trainable_weights)
    assert 0 < head_only < total
    assert {w.path.split("/")[0] for w in model.trainable_weights} <= {
        "fc1", "fc1_bn", "embedding"}
    models.freeze_backbone(model, frozen=False)
    assert len(model.trainable_weights) == total


def test_registry_errors():
    with pytest.raises(KeyError, match="unknown model 'nonet'; registered: .*lunet"):
        models.build("nonet")
    with pytest.raises(ValueError, match=r"input_shape must be \(H, W, 3\), got \(128, 64\)"):
        models.build("lunet", (128, 64))
    with pytest.raises(KeyError, match="unknown model 'nonet'"):
        models.preprocessing("nonet")


def test_trinet_without_conv_biases_is_25_74_million_and_keeps_the_weights(tmp_path):
    """Hermans et al. Sec. 3.3: "the ResNet-50 architecture and the weights provided by He
    et al. (25.74 M parameters)": He et al.'s convolutions have no bias."""
    model = models.build("trinet", (256, 128, 3), conv_bias=False)
    assert _trainable(model) == 25_739_456
    assert f"{_trainable(model) / 1e6:.2f}" == "25.74"
    # Keras-style weights with non-zero conv biases and BN statistics, folded exactly
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 32, 3),
                                       pooling="avg")
    rng = np.random.default_rng(0)
    for layer in base.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape))
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
    path = str(tmp_path / "r50.weights.h5")
    base.save_weights(path)
    with_bias = models.build("trinet", (64, 32, 3), weights=path).get_layer("backbone")
    without = models.build("trinet", (64, 32, 3), weights=path, conv_bias=False)
    without = without.get_layer("backbone")
    x = rng.random((2, 64, 32, 3)).astype(np.float32) * 100
    a, b = with_bias(x, training=False).numpy(), without(x, training=False).numpy()
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max())


@pytest.mark.parametrize("name", ["lunet", "resnet_edge"])
def test_saved_model_loads_in_a_fresh_process(tmp_path, name):
    """embedding.keras must load where nothing of kreid was imported before (bin/export.py)."""
    import subprocess
    import sys

    model = models.build(name, (64, 32, 3))
    path = str(tmp_path / "m.keras")
    model.save(path)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys, numpy as np\n"
            "from kreid.models import load_model\n"
            f"m = load_model({path!r})\n"
            "print(m(np.zeros((1, 64, 32, 3), np.float32)).shape)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": repo}, timeout=300)
    assert out.returncode == 0 and "(1, 128)" in out.stdout, out.stderr[-1500:]
