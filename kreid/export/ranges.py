"""Activation ranges of the full-integer int8 TFLite model: TFLite's min/max, or clipped.

TFLite's calibrator records each activation tensor's minimum and maximum over
the calibration images; the tensor's int8 step is then (max - min) / 255, so
one rare large value coarsens the step for every other value. (On the CUHK03
MobileNetV2, 1,000 calibration images lost more mAP than 200: BENCHMARKS.md.)
:func:`clip` replaces the recorded range of every activation tensor before
the model is quantized (``bin/export.py --int8_ranges``):

- ``minmax``: TFLite's own ranges, unchanged;
- ``percentile``: the 0.01st and 99.99th percentiles of the tensor's values
  (the percentile calibration of TensorRT and ONNX Runtime);
- ``mse``: the range [alpha_lo * min, alpha_hi * max], over a grid of alphas
  in (0, 1] for each end, whose int8 quantization (clipping + rounding) has
  the smallest mean squared error over the tensor's values (MSE range
  setting, e.g. Nagel et al., *A White Paper on Neural Network
  Quantization*, 2021, section 3.4.1; :func:`range_mse`);
- ``image_mse``: the same grid, but the error minimised is the mean over the
  calibration images of each image's own MSE divided by its own mean square,
  so every image counts the same whatever its scale. ``mse`` and
  ``percentile`` weigh values: when a few whole images run far beyond the
  rest (a CUHK03 LuNet's last block ran 100-500x its median on 12 of 200
  images, 6% of the values: BENCHMARKS.md), they keep the range wide enough
  for those images and every typical image's tensor rounds to zero, the
  collapse ``calibration_fidelity`` warns about. ``image_mse`` trades those
  images for the rest. It is the default (:data:`DEFAULT`): on seven models
  measured (three CUHK03 LuNets, three CUHK03 MobileNetV2s, the demo's LuNet)
  it was the only method that kept the CUHK03 LuNets (-0.39 to +0.16 mAP
  points where TFLite's ranges lost 2.4-11.9) and within 0.0023 of the best
  method's cosine to float on the others (BENCHMARKS.md). ``minmax`` gives
  TFLite's converter's own file.

The values come from the calibrated float model
(:func:`kreid.export.convert.calibrated_tflite`) run on the calibration images
with every intermediate tensor kept; ``per_image`` of each tensor's values (at
the same random positions in every image) per image enter the statistics, and
TFLite's recorded range bounds the candidates. Graph inputs keep TFLite's range (a clipped input
range would saturate pixels); weights are quantized per channel by the
converter as before. The samples take ``per_image`` x images x tensors floats
(about 0.25 GB for 200 images of a MobileNetV2).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

METHODS = ("minmax", "percentile", "mse", "image_mse")
DEFAULT = "image_mse"        # it collapsed none of the seven models measured (BENCHMARKS.md)
PERCENTILE = 99.99
ALPHAS = np.linspace(0.05, 1.0, 96)


def check(method: str) -> str:
    """``method`` if it is one of :data:`METHODS`; an error naming them otherwise."""
    if method not in METHODS:
        raise ValueError(f"int8_ranges must be one of {', '.join(METHODS)}, got {method!r}")
    return method


def _ranged_tensors(model) -> dict[int, tuple[float, float]]:
    """{tensor index: (min, max)} of the activations the calibrator gave a range: the
    outputs of the graph's operators (never a weight, never the graph input)."""
    graph = model.subgraphs[0]
    produced = {int(t) for op in graph.operators for t in op.outputs} - {
        int(i) for i in graph.inputs}
    out = {}
    for index in sorted(produced):
        q = graph.tensors[index].quantization
        if q is None or q.min is None or q.max is None or len(q.min) != 1:
            continue
        out[index] = (float(q.min[0]), float(q.max[0]))
    return out


def activation_samples(calibrated: bytes, calibration: np.ndarray, per_image: int = 2048,
                       seed: int = 0) -> dict[int, np.ndarray]:
    """{tensor index: values [images, positions]} of every ranged activation over the
    calibration images: the same ``per_image`` random positions of it in every image (all
    when the tensor is smaller), so a uniform sample of its values, one row per image."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tensorflow.lite.tools import flatbuffer_utils

    ranged = _ranged_tensors(flatbuffer_utils.convert_bytearray_to_object(calibrated))
    with warnings.catch_warnings():     # "for debugging purposes only": here it is the point
        warnings.simplefilter("ignore")
        interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType
                             .BUILTIN_WITHOUT_DEFAULT_DELEGATES)     # every tensor computed
    interp.allocate_tensors()
    source = interp.get_input_details()[0]["index"]
    rng = np.random.default_rng(seed)
    picks: dict[int, np.ndarray | None] = {}
    chunks: dict[int, list[np.ndarray]] = {i: [] for i in ranged}
    for image in calibration:
        interp.set_tensor(source, image[None].astype(np.float32))
        interp.invoke()
        for index in ranged:
            values = interp.get_tensor(index).ravel()
            if index not in picks:
                picks[index] = (None if values.size <= per_image
                                else rng.choice(values.size, per_image, replace=False))
            pick = picks[index]
            chosen = values if pick is None else values[pick]
            chunks[index].append(np.array(chosen, np.float32))
    return {i: np.stack(c).astype(np.float32) for i, c in chunks.items()}


def range_mse(values: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              small_exact: bool = False) -> np.ndarray:
    """Mean squared 8-bit quantization error of ``values`` for every pair (lo_i, hi_j):
    [len(lo), len(hi)]. Clipping error exactly (tail sums over the sorted values);
    rounding error as step^2 / 12 per value inside the range (a step of
    (hi - lo) / 255), except exact zeros, which the zero point represents.

    ``small_exact``: a value within half a step of zero rounds to zero, and its error is
    its square, counted exactly (step^2 / 12 is kept beyond, where it is at most the
    value's square). So no value's error exceeds its own square and the error of a set of
    values never exceeds their mean square, which ``image_mse`` needs; step^2 / 12 alone
    overstates the error of values far below one step and understates it just below
    half a step."""
    x = np.sort(np.asarray(values, np.float64).ravel())
    n = len(x)
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if (lo > 0).any() or (hi < 0).any():
        raise ValueError("every range must contain 0 (lo <= 0 <= hi)")
    s1, s2 = np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], np.cumsum(x * x)])
    a = np.searchsorted(x, hi, side="right")          # values above hi: x[a:]
    above = (s2[n] - s2[a]) - 2 * hi * (s1[n] - s1[a]) + hi ** 2 * (n - a)
    b = np.searchsorted(x, lo, side="left")           # values below lo: x[:b]
    below = s2[b] - 2 * lo * s1[b] + lo ** 2 * b
    step = (hi[None, :] - lo[:, None]) / 255.0
    if small_exact:                                   # x[p:q]: inside, |x| < step / 2
        t = step / 2.0
        p = np.searchsorted(x, np.maximum(lo[:, None], -t), side="left")
        q = np.searchsorted(x, np.minimum(hi[None, :], t), side="left")
        q = np.where(hi[None, :] <= t, a[None, :], q)    # values at hi itself: small too
        small = s2[q] - s2[p]
        rest = (a[None, :] - b[:, None]) - (q - p)
        rounding = small + np.maximum(rest, 0) * step ** 2 / 12.0
    else:
        zeros = np.searchsorted(x, 0.0, side="right") - np.searchsorted(x, 0.0, side="left")
        inside = (a[None, :] - b[:, None]) - zeros
        rounding = np.maximum(inside, 0) * step ** 2 / 12.0
    return (below[:, None] + above[None, :] + rounding) / n


def clipped_range(values: np.ndarray, method: str,
                  bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """The (min, max) ``method`` picks for one tensor's ``values`` (a uniform sample of
    them will do; ``image_mse`` needs them as [images, positions], the others take any
    shape), always containing 0; ``bounds`` is the tensor's exact (min, max) when the
    sample may miss it (TFLite's recorded range), else the values' own."""
    check(method)
    per_image = np.asarray(values, np.float64)
    values = per_image.ravel()
    if not values.size or not np.isfinite(values).all():
        raise ValueError("activation values must be finite and non-empty")
    if method == "image_mse" and per_image.ndim != 2:
        raise ValueError(f"image_mse needs the values as [images, positions], got shape "
                         f"{per_image.shape}")
    lo, hi = bounds if bounds is not None else (float(values.min()), float(values.max()))
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if method == "minmax" or hi - lo == 0.0:
        return lo, hi
    if method == "percentile":
        return (min(float(np.percentile(values, 100.0 - PERCENTILE)), 0.0),
                max(float(np.percentile(values, PERCENTILE)), 0.0))
    if method == "image_mse":
        errors = image_mse(per_image, ALPHAS * lo, ALPHAS * hi)
    else:
        errors = range_mse(values, ALPHAS * lo, ALPHAS * hi)    # every pair, lo and hi apart
    i, j = np.unravel_index(int(np.argmin(errors)), errors.shape)
    return float(ALPHAS[i] * lo), float(ALPHAS[j] * hi)


def image_mse(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean over images (rows of ``values``) of each image's :func:`range_mse` (with
    ``small_exact``) divided by its mean square, for every pair (lo_i, hi_j):
    [len(lo), len(hi)]. Each image's term lies in [0, 1]: 0 when the range holds it
    exactly, 1 when all of it rounds or clips to zero; an all-zero image's is 0. So an
    image far above the rest costs at most 1 when clipped, and a nearly blank image
    cannot take a range over."""
    total = np.zeros((len(lo), len(hi)))
    rows = np.asarray(values, np.float64)
    for row in rows:
        power = float(np.mean(row * row))
        if power > 0.0:
            total += range_mse(row, lo, hi, small_exact=True) / power
    return total / max(len(rows), 1)


def set_ranges(calibrated: bytes, ranges: dict[int, tuple[float, float]]) -> bytes:
    """``calibrated`` with the recorded range of each tensor in ``ranges`` replaced."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(calibrated)
    tensors = model.subgraphs[0].tensors
    for index, (lo, hi) in ranges.items():
        tensors[index].quantization.min = np.array([lo], np.float32)
        tensors[index].quantization.max = np.array([hi], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def quantize(calibrated: bytes, io_type, float_nodes: Sequence[str] = ()) -> bytes:
    """The full-integer model from a calibrated one, as TFLiteConverter makes it (its MLIR
    quantizer, then its read-only buffer deduplication), with ``io_type`` (a tf dtype) at
    the input and output; the ops whose outputs are named in ``float_nodes`` stay in float
    (TFLite's selective quantization, as its QuantizationDebugger's denylist)."""
    from tensorflow.lite.python import convert

    return convert.deduplicate_readonly_buffers(convert.mlir_quantize(
        calibrated, False, input_data_type=io_type, output_data_type=io_type,
        denylisted_nodes=list(float_nodes) or None))


def recorded_ranges(calibrated: bytes) -> dict[int, tuple[float, float]]:
    """TFLite's recorded (min, max) of every activation of a calibrated model."""
    from tensorflow.lite.tools import flatbuffer_utils

    return _ranged_tensors(flatbuffer_utils.convert_bytearray_to_object(calibrated))


def clip(calibrated: bytes, calibration: np.ndarray, method: str,
         io_type, float_nodes: Sequence[str] = ()) -> tuple[bytes, dict]:
    """Replace every activation range of ``calibrated`` (:func:`kreid.export.convert.
    calibrated_tflite`) by ``method``'s, then quantize. Returns the int8 model and a
    summary: how many ranges got narrower and the median ratio of the new range's width to
    TFLite's."""
    check(method)
    recorded = recorded_ranges(calibrated)
    ranges = {}
    if method != "minmax":
        samples = activation_samples(calibrated, calibration)
        ranges = {i: clipped_range(samples[i], method, recorded[i]) for i in recorded}
    ratios = [(hi - lo) / max(max(recorded[i][1], 0.0) - min(recorded[i][0], 0.0), 1e-12)
              for i, (lo, hi) in ranges.items()]
    summary = {"method": method, "tensors": len(recorded),
               "clipped": int(sum(r < 0.999 for r in ratios)),
               "median_width_ratio": round(float(np.median(ratios)), 4) if ratios else 1.0}
    return quantize(set_ranges(calibrated, ranges) if ranges else calibrated, io_type,
                    float_nodes), summary
