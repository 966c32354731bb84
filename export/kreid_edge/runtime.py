"""Embedders for exported models and the test-time preprocessing of training, in OpenCV.

Every exported model ``m.tflite`` / ``m.onnx`` has a sidecar ``m.tflite.json``
with ``input_size`` [H, W] and ``preprocessing`` (``scale``: /255,
``imagenet``: RGB->BGR minus the ImageNet mean, ``torch``: mean/std, ``none``).
The embedders take float32 batches that are already preprocessed (the
Embedder interface shared with the Keras model); :class:`Preprocessor` turns
BGR images (OpenCV) into such batches exactly as ``kreid.data.augment`` does
at test time (bilinear resize with half-pixel centres, on float values).
"""

from __future__ import annotations

import os
import time

import numpy as np

from kreid_edge.files import file_fingerprint
from kreid_edge.preprocessing import Preprocessor
from kreid_edge.sidecar import Sidecar, SidecarError, read_sidecar  # noqa: F401  (re-exported)


class _Base:
    runtime = ""                 # the name sidecars give this runtime ("runtime" key)
    suffix = ""                  # the file suffix of sidecars that name no runtime

    def __init__(self, model_path: str, sidecar: Sidecar | None = None):
        if not os.path.isfile(model_path):
            raise FileNotFoundError(f"model file not found: {model_path}")
        self.path = model_path
        self.meta = sidecar or read_sidecar(model_path, "export the model with "
                                                        "bin/export.py, which writes it")
        self.input_size = self.meta.input_size
        self.preprocessing = self.meta.preprocessing
        self.preprocessor = Preprocessor(self.input_size, self.preprocessing)
        self.fingerprint = file_fingerprint(model_path)
        self.embedding_dim = 0        # set by the subclass from the model's output shape

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        h, w = self.input_size
        if images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(f"{os.path.basename(self.path)} expects a batch of shape "
                             f"[B, {h}, {w}, 3], got {images.shape}")
        if images.dtype != np.float32:
            raise TypeError(f"{os.path.basename(self.path)} expects float32 preprocessed images "
                            f"({self.preprocessing}), got {images.dtype}; use .embed_images() "
                            "for raw uint8 images")
        return images

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.embedding_dim), np.float32)

    def embed_images(self, images, batch_size: int = 32) -> np.ndarray:
        """Embed raw BGR images (arrays or paths) with the model's own preprocessing."""
        out = [self(self.preprocessor(images[i:i + batch_size]))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else self._empty()

    def latency(self, runs: int = 30, warmup: int = 3) -> float:
        """Median seconds per image at batch 1."""
        x = np.random.default_rng(0).random((1, *self.input_size, 3)).astype(np.float32)
        for _ in range(warmup):
            self(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self(x)
            times.append(time.perf_counter() - start)
        return float(np.median(times))


class TFLiteEmbedder(_Base):
    """A ``.tflite`` model (float, float16, dynamic-range or full-integer int8/uint8)."""

    runtime, suffix = "tflite", ".tflite"

    def __init__(self, model_path: str, num_threads: int | None = None,
                 sidecar: Sidecar | None = None):
        super().__init__(model_path, sidecar)
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self._batch = int(self._in["shape"][0])
        self.embedding_dim = int(self._out["shape"][-1])

    def _set_batch(self, n: int) -> None:
        if n != self._batch:
            self.interpreter.resize_tensor_input(self._in["index"], [n, *self.input_size, 3])
            self.interpreter.allocate_tensors()
            self._in = self.interpreter.get_input_details()[0]
            self._out = self.interpreter.get_output_details()[0]
            self._batch = n

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = self._check(images)
        if not len(images):           # resizing the interpreter to 0 would break later calls
            return self._empty()
        self._set_batch(len(images))
        dtype = self._in["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zero = self._in["quantization"]
            info = np.iinfo(dtype)
            images = np.clip(np.round(images / scale + zero), info.min, info.max).astype(dtype)
        self.interpreter.set_tensor(self._in["index"], images)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._out["index"])
        if self._out["dtype"] in (np.int8, np.uint8):
            scale, zero = self._out["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return np.asarray(out, np.float32)


class OnnxEmbedder(_Base):
    """An ``.onnx`` model run by ONNX Runtime on the CPU."""

    runtime, suffix = "onnx", ".onnx"

    def __init__(self, model_path: str, num_threads: int | None = None,
                 sidecar: Sidecar | None = None):
        super().__init__(model_path, sidecar)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_path, options,
                                            providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name
        dim = self.session.get_outputs()[0].shape[-1]
        self.embedding_dim = dim if isinstance(dim, int) else 0

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = self._check(images)
        if not len(images):
            return self._empty()
        return np.asarray(self.session.run(None, {self._input: images})[0], np.float32)


RUNTIMES = {cls.runtime: cls for cls in (TFLiteEmbedder, OnnxEmbedder)}


def load_embedder(model_path: str, num_threads: int | None = None,
                  sidecar: Sidecar | None = None):
    """The embedder of an exported model file: the runtime its sidecar names (``runtime``,
    written by kreid's exporter for every format it can run), or, for sidecars that name
    none, the one of the file's suffix."""
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"model file not found: {model_path}")
    meta = sidecar or read_sidecar(model_path, "export the model with bin/export.py, which "
                                               "writes it")
    name = meta.extra.get("runtime")
    if name is None:
        name = next((r for r, cls in RUNTIMES.items() if model_path.endswith(cls.suffix)), None)
    if name not in RUNTIMES:
        raise ValueError(f"{model_path}: no runtime for it (sidecar runtime {name!r}; "
                         f"kreid_edge runs {', '.join(RUNTIMES)})")
    return RUNTIMES[name](model_path, num_threads, meta)
