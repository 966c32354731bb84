"""Converters: the embedding model to SavedModel, TFLite (float32, float16, dynamic-range
int8, full-integer int8) and ONNX (float32, static int8 QDQ per-channel).

The formats themselves (name, suffix, which converter, which runtime, what
the sidecar records) are records of :mod:`kreid.export.formats`, which writes
them; this module holds the conversions they call. Every output is written
to a temporary name and renamed (no half-written model files) and gets a
sidecar ``<file>.json`` (:mod:`kreid_edge.sidecar`) with the input size and
the preprocessing, which the runtimes in ``kreid_edge`` read. An existing
output file without a kreid sidecar was not written by kreid and is never
replaced.

Full-integer formats are calibrated on a representative set of training
images with test-time preprocessing (:func:`calibration_images`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
from typing import Sequence

import numpy as np

from kreid.export import ranges
from kreid_edge.files import atomic_write, write_bytes
from kreid_edge.sidecar import Sidecar, sidecar_path
from kreid_edge.sidecar import write_sidecar as _write_sidecar

MIN_CALIBRATION = 8
FIDELITY_WARNING = 0.5     # below it, an int8 file has lost what tells the images apart
log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """A conversion failed; the message names the format and, when known, the op."""


@dataclasses.dataclass
class ExportSpec:
    input_size: tuple[int, int]
    preprocessing: str
    model_name: str = "model"
    source_fingerprint: str = ""      # of the Keras model the files are exported from

    @classmethod
    def from_sidecar(cls, sidecar: Sidecar, source_fingerprint: str = "") -> "ExportSpec":
        return cls(tuple(sidecar.input_size), sidecar.preprocessing, sidecar.model,
                   source_fingerprint)


def calibration_pick(total: int, num: int, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of the ``num`` records of ``total`` that :func:`calibration_images`
    uses with ``seed``."""
    return np.sort(np.random.default_rng(seed).choice(total, num, replace=False))


def calibration_images(records, spec: ExportSpec, num: int = 200, seed: int = 0) -> np.ndarray:
    """``num`` random training images, preprocessed as at test time: [num, H, W, 3] float32."""
    from kreid.data import pipeline

    if num < MIN_CALIBRATION:
        raise ValueError(f"calibration needs at least {MIN_CALIBRATION} images, asked for {num}")
    if len(records) < num:
        raise ValueError(f"calibration asks for {num} images but only {len(records)} are given")
    chosen = [records[i] for i in calibration_pick(len(records), num, seed)]
    batches = [np.asarray(b)[:, 0] for b in pipeline.iterate(
        pipeline.eval_dataset(chosen, spec.input_size, "none", spec.preprocessing, 64), chosen)]
    return np.concatenate(batches).astype(np.float32)


def check_calibration(images: np.ndarray, spec: ExportSpec) -> np.ndarray:
    images = np.asarray(images)
    h, w = spec.input_size
    if images.ndim != 4 or images.shape[1:] != (h, w, 3):
        raise ValueError(f"calibration images must be [N, {h}, {w}, 3], got {images.shape}")
    if len(images) < MIN_CALIBRATION:
        raise ValueError(f"calibration set too small: {len(images)} images, need at least "
                         f"{MIN_CALIBRATION}")
    if not np.isfinite(images).all():
        raise ValueError("calibration images contain NaN or inf")
    return images.astype(np.float32)


def int8_fidelity(path: str, model, images: np.ndarray, runtime: str | None = None) -> float:
    """How much of the float model the exported file keeps on ``images``: the median over
    the images of 1 - |q_i - f_i|^2 / |f_i - c|^2, with f_i and q_i the float model's and the
    file's embeddings of image i and c the per-dimension median of the f_i. 1 is exact; 0
    or less means the file tells that image from the typical one no better than a constant
    embedding would (a collapsed quantization, which a cosine to the float embeddings can
    hide behind a large common offset). The median makes it robust to a few outlier
    images: the R^2 over all images (1 - sum |q - f|^2 / sum |f - mean f|^2) is weighted by
    each image's spread, and a CUHK03 LuNet whose final block ran 100-500x its median on 12
    of 200 calibration images kept R^2 = 0.61 while every typical image came out as the
    same embedding (this measure: -0.10; BENCHMARKS.md). On healthy files the two agree
    (0.95 / 0.95 for a MobileNetV2, 0.995 / 0.995 for the demo's LuNet). The exporter
    scores 32 of the calibration images, spread over the set: in-sample for the ranges, a
    check for collapse, not an accuracy figure; a file that fails on fewer than half of
    them passes it (the comparison table scores every image). ``runtime``: the
    kreid_edge runtime that runs the file, for a file whose sidecar is not yet
    written (the fidelity goes into it)."""
    from kreid_edge import load_embedder

    reference = np.asarray(model(images, training=False), np.float64)
    h, w = (int(v) for v in images.shape[1:3])
    sidecar = Sidecar((h, w), "none", extra={"runtime": runtime}) if runtime else None
    quantized = np.asarray(load_embedder(path, sidecar=sidecar)(images), np.float64)
    typical = np.median(reference, axis=0)
    spread = np.sum((reference - typical) ** 2, axis=1)
    kept = 1.0 - np.sum((quantized - reference) ** 2, axis=1) / np.maximum(spread, 1e-12)
    return float(np.median(kept))


def write_sidecar(path: str, spec: ExportSpec, fmt: str, extra: dict | None = None) -> None:
    extra = dict(extra or {})
    if spec.source_fingerprint:
        extra["source_fingerprint"] = spec.source_fingerprint
    _write_sidecar(path, Sidecar(tuple(spec.input_size), spec.preprocessing, spec.model_name,
                                 fmt, extra=extra))


def check_replaceable(path: str) -> None:
    """Refuse to replace ``path`` unless kreid wrote it (it has a kreid sidecar)."""
    if os.path.exists(path) and not os.path.isfile(sidecar_path(path)):
        raise ExportError(f"{path} exists and was not written by kreid (no {sidecar_path(path)}"
                          "); choose another output folder or move it away")


def saved_model(model, out_dir: str, spec: ExportSpec | None = None) -> str:
    """Export a SavedModel to ``out_dir`` (replacing only one kreid wrote, see
    :func:`check_replaceable`); with ``spec`` its sidecar is written too."""
    check_replaceable(out_dir)
    tmp = tempfile.mkdtemp(prefix=".savedmodel-", dir=os.path.dirname(os.path.abspath(out_dir)))
    try:
        model.export(tmp, format="tf_saved_model", verbose=False)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if spec is not None:
        write_sidecar(out_dir, spec, "saved_model")
    return out_dir


_OP_PATTERN = re.compile(r"'(tf|tfl)\.([A-Za-z0-9_]+)'")


def _unsupported_ops(message: str) -> list[str]:
    return sorted({m.group(2) for m in _OP_PATTERN.finditer(message)})


def _converter(saved_model_dir: str, mode: str, calibration: np.ndarray | None,
               io_type: str):
    """A TFLiteConverter set up for ``mode`` (see :func:`tflite`)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if calibration is None:
            raise ValueError("full-integer int8 needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i:i + 1]]
                                                    for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = _io_dtype(io_type)
    elif mode == "int16x8":     # int16 activations, int8 weights (TFLite's 16x8 scheme)
        if calibration is None:
            raise ValueError("int16x8 needs calibration images")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i:i + 1]]
                                                    for i in range(len(calibration)))
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    elif mode == "fake_quant":  # a quantization-aware model: its fake-quant ranges, no data
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.inference_input_type = converter.inference_output_type = _io_dtype(io_type)
    elif mode != "float32":
        raise ValueError(f"unknown TFLite mode {mode!r}")
    return converter


IO_TYPES = ("int8", "uint8", "float32")


def io_dtype_name(io_type: str) -> str:
    """``io_type`` if a full-integer TFLite file can take it, an error naming them otherwise."""
    if io_type not in IO_TYPES:
        raise ValueError(f"io_type must be int8, uint8 or float32, got {io_type!r}")
    return io_type


def _io_dtype(io_type: str):
    import tensorflow as tf

    return getattr(tf, io_dtype_name(io_type))


def calibrated_tflite(saved_model_dir: str, calibration: np.ndarray,
                      io_type: str = "int8") -> bytes:
    """The float TFLite model with TFLite's calibrated min/max of every activation: the
    full-integer conversion stopped before quantizing (:mod:`kreid.export.ranges`)."""
    converter = _converter(saved_model_dir, "int8", calibration, io_type)
    converter._experimental_calibrate_only = True     # noqa: SLF001  (TF's debugger does too)
    return converter.convert()


def tflite(saved_model_dir: str, path: str, mode: str, calibration: np.ndarray | None = None,
           io_type: str = "int8", int8_ranges: str = ranges.DEFAULT,
           summary: dict | None = None, float_nodes: Sequence[str] = ()) -> str:
    """``mode``: float32 | float16 | dynamic_int8 | int8 (full integer, ``io_type``
    int8/uint8/float32; activation ranges by ``int8_ranges``, see :mod:`kreid.export.ranges`,
    whose summary goes into ``summary`` when given) | int16x8 (int16 activations, int8
    weights, float input and output) | fake_quant (the SavedModel of a quantization-aware
    model, :mod:`kreid.models.qat`: full integer from its fake-quant ranges, no
    calibration, ``io_type`` as for int8). ``float_nodes`` (int8 only): the ops whose
    output tensors these name stay in float (a mixed file, :func:`layer_errors`)."""
    ranges.check(int8_ranges)
    if float_nodes and mode != "int8":
        raise ValueError(f"float_nodes is for the int8 mode, not {mode!r}")
    clip = mode == "int8" and (int8_ranges != "minmax" or bool(float_nodes))
    if clip:          # the settings fail as they would in _converter, before any work
        if calibration is None:
            raise ValueError("full-integer int8 needs calibration images")
        dtype = _io_dtype(io_type)
    else:
        converter = _converter(saved_model_dir, mode, calibration, io_type)
    try:
        if clip:
            data, clipped = ranges.clip(calibrated_tflite(saved_model_dir, calibration, io_type),
                                        calibration, int8_ranges, dtype, float_nodes)
            if summary is not None:
                summary.update(clipped)
        else:
            data = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and friends
        ops = _unsupported_ops(str(exc))
        raise ExportError(f"TFLite {mode} conversion failed"
                          + (f"; ops the target cannot run: {', '.join(ops)}" if ops else "")
                          + f" ({str(exc).strip().splitlines()[0][:300]})") from exc
    write_bytes(path, data)
    return path


def layer_errors(saved_model_dir: str, calibration: np.ndarray, num: int = 32) -> list[dict]:
    """Every quantized op of the full-integer model with its error, largest first: TFLite's
    QuantizationDebugger, on ``num`` calibration images, RMSE of the op's int8 output
    against its float output in units of the output's quantization step (``rmse/scale``).
    ``tensor`` names the op's output, as :func:`tflite`'s ``float_nodes`` takes it."""
    import csv
    import io

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    data = lambda: ([calibration[i:i + 1]] for i in range(min(len(calibration), num)))  # noqa: E731
    converter.representative_dataset = data
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=data)
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r.get("scale") or 0) or 1e-12
        rows.append({"op": r.get("op_name"), "tensor": r.get("tensor_name"),
                     "rmse/scale": float(np.sqrt(float(r.get("mean_squared_error") or 0)))
                     / scale})
    return sorted(rows, key=lambda r: -r["rmse/scale"])


def tflite_ops(path: str) -> list[str]:
    """Builtin op names used by a .tflite file (for checks and reports)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    return sorted({d["op_name"] for d in interp._get_ops_details()})


def onnx_float(model, path: str, opset: int = 17) -> str:
    try:
        with atomic_write(path, mode=None, suffix=".onnx") as tmp:
            model.export(tmp, format="onnx", verbose=False, opset_version=opset)
    except Exception as exc:
        ops = _unsupported_ops(str(exc))
        raise ExportError("ONNX export failed" + (f"; unsupported ops: {', '.join(ops)}"
                                                 if ops else "") + f" ({exc})") from exc
    return path


def onnx_int8(float_path: str, path: str, calibration: np.ndarray,
              per_channel: bool = True) -> str:
    """Static QDQ int8 quantization with ONNX Runtime, calibrated on ``calibration``."""
    import onnxruntime as ort
    from onnxruntime import quantization as q

    name = ort.InferenceSession(float_path, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory(prefix=".onnx-pre-",
                                     dir=os.path.dirname(os.path.abspath(path))) as work:
        pre = os.path.join(work, "pre.onnx")
        q.quant_pre_process(float_path, pre, skip_symbolic_shape=True)
        with atomic_write(path, mode=None, suffix=".onnx") as tmp:
            q.quantize_static(pre, tmp, Reader(), quant_format=q.QuantFormat.QDQ,
                              per_channel=per_channel, activation_type=q.QuantType.QInt8,
                              weight_type=q.QuantType.QInt8,
                              calibrate_method=q.CalibrationMethod.MinMax)
    return path


def quiet_converters() -> None:
    """The converters log every saved shard and graph pass at INFO; keep warnings only."""
    import logging

    for name in ("tensorflow", "tf2onnx", "onnxruntime", "absl", "root"):
        logging.getLogger(name).setLevel(logging.WARNING)
