"""The export formats, as a registry: one :class:`Format` record each.

A record says everything the rest of kreid needs to know of a format: its
name (``--formats``), the file suffix, how to write it (its converter), which
``kreid_edge`` runtime runs it (recorded in the file's sidecar, so the device
loads it without knowing the format), whether it needs calibration images,
whether it is an integer file (its fidelity to the float model is checked
when written), whether the per-layer quantization report applies to it, and
the formats it is made from. :func:`export_all` (``bin/export.py``, the
demo, the comparison table) writes any list of them; adding a format is one
:func:`register` call here plus its test.

:class:`ExportJob` is what every export starts from: the float Keras
embedding model, the :class:`~kreid.export.convert.ExportSpec` its files
record, the calibration images when a format needs them, and the int8
settings (checked once). :meth:`ExportJob.from_keras_file` is the one start-up
shared by ``bin/export.py --nocompare`` and the comparison table.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from typing import Any, Callable, Sequence

import numpy as np

from kreid.export import convert, ranges
from kreid.export.convert import ExportError, ExportSpec

log = logging.getLogger(__name__)


# tflite_mixed_int8 keeps this many of the most sensitive layers in float
MIXED_FLOAT_LAYERS = 3


@dataclasses.dataclass
class ExportJob:
    """A float Keras embedding model and the settings of its export."""

    model: Any
    spec: ExportSpec
    calibration: np.ndarray | None = None
    io_type: str = "int8"               # full-integer TFLite input/output type
    int8_ranges: str = ranges.DEFAULT   # activation ranges of tflite_int8
    qat_model: Any = None               # a quantization-aware model's fake-quant graph
    mixed_float_layers: int = MIXED_FLOAT_LAYERS   # tflite_mixed_int8: layers kept float
    _work: str = ""                     # temporary folder (the converters' SavedModels)
    _saved_model: str = ""
    _qat_saved_model: str = ""

    def __post_init__(self):
        from kreid.models import qat

        if self.qat_model is None and qat.is_qat(self.model):
            # a quantization-aware model: its fake-quant graph for the QAT formats, its
            # float view (same weights, no quantization op) for every other format
            self.qat_model, self.model = self.model, qat.float_view(self.model)
        ranges.check(self.int8_ranges)              # before anything is written
        convert.io_dtype_name(self.io_type)
        if self.calibration is not None:
            self.calibration = convert.check_calibration(self.calibration, self.spec)
        if self.mixed_float_layers < 0:
            raise ValueError(f"mixed_float_layers must be >= 0, got {self.mixed_float_layers}")
        h, w = self.spec.input_size
        if tuple(self.model.input_shape[1:3]) != (h, w):
            raise ValueError(f"model input {self.model.input_shape} does not match "
                             f"input_size {(h, w)}")
        self.model(np.zeros((1, h, w, 3), np.float32), training=False)   # ONNX export needs
        # a model that has been called once (a freshly built one has not)

    @classmethod
    def from_keras_file(cls, keras_path: str, formats: Sequence[str] | None = None,
                        calibration_records=None, num_calibration: int = 200,
                        io_type: str = "int8", int8_ranges: str = ranges.DEFAULT,
                        preprocessing: str | None = None, supply: str = "",
                        calibrate: bool = False,
                        mixed_float_layers: int = MIXED_FLOAT_LAYERS) -> "ExportJob":
        """The job of a ``.keras`` embedding model (its sidecar gives the preprocessing;
        ``preprocessing`` overrides it or stands in for a missing one, ``supply`` names
        the flag for the error); calibration images from ``calibration_records`` when a
        format of ``formats`` needs them, or always with ``calibrate`` (the comparison
        table's per-layer report runs on them)."""
        from kreid.evaluation.embed import keras_sidecar, weights_fingerprint
        from kreid.models import load_model

        ranges.check(int8_ranges)
        sidecar = keras_sidecar(keras_path, preprocessing, supply)
        model = load_model(keras_path)
        spec = ExportSpec(tuple(int(v) for v in model.input_shape[1:3]), sidecar.preprocessing,
                          sidecar.model, weights_fingerprint(model))
        calibration = None
        if calibrate or any(FORMATS[f].calibrated for f in resolve(formats)):
            if not calibration_records:
                raise ValueError("full-integer formats need calibration_records "
                                 "(training images)")
            calibration = convert.calibration_images(
                calibration_records, spec, min(num_calibration, len(calibration_records)))
        return cls(model, spec, calibration, io_type, int8_ranges,
                   mixed_float_layers=mixed_float_layers)

    def saved_model_dir(self) -> str:
        """The (float) model as a SavedModel in a temporary folder (made once, removed by
        :meth:`close`): the TFLite converters' input, never a user's file."""
        if not self._saved_model:
            self._saved_model = convert.saved_model(
                self.model, os.path.join(self._work_dir(), "model.savedmodel"))
        return self._saved_model

    def qat_saved_model_dir(self) -> str:
        """The quantization-aware model's fake-quant graph as a SavedModel (temporary)."""
        if self.qat_model is None:
            raise ValueError("not a quantization-aware model")
        if not self._qat_saved_model:
            self._qat_saved_model = convert.saved_model(
                self.qat_model, os.path.join(self._work_dir(), "qat.savedmodel"))
        return self._qat_saved_model

    def _work_dir(self) -> str:
        if not self._work:
            self._work = tempfile.mkdtemp(prefix=".kreid-export-")
        return self._work

    def close(self) -> None:
        if self._work:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = self._qat_saved_model = ""
            if not os.path.exists(self._saved_model):
                self._saved_model = ""

    def __enter__(self) -> "ExportJob":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format. ``write(job, path, written)`` writes the file (``written``:
    {format: path} of the files written before it, its ``depends`` among them) and
    returns what its sidecar records beyond the spec."""

    name: str
    suffix: str
    write: Callable[[ExportJob, str, dict], dict]
    runtime: str | None = None       # the kreid_edge runtime that runs it (None: not scored)
    calibrated: bool = False         # needs calibration images
    integer: bool = False            # integer arithmetic: fidelity checked when written
    #                                  (on the calibration images, when the job has them)
    layer_report: bool = False       # TFLite's per-layer quantization error applies
    depends: tuple[str, ...] = ()    # formats written first (their files kept)
    needs_qat: bool = False          # only of a quantization-aware model (embedding.qat.keras)


FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format; its name and suffix must be new (one file per format), and an
    integer format needs a runtime (its fidelity is measured by running it)."""
    if fmt.name in FORMATS:
        raise ValueError(f"export format {fmt.name!r} is registered already")
    clash = [f.name for f in FORMATS.values() if f.suffix == fmt.suffix]
    if clash:
        raise ValueError(f"export format {fmt.name!r}: suffix {fmt.suffix!r} is {clash[0]}'s")
    if fmt.integer and not fmt.runtime:
        raise ValueError(f"export format {fmt.name!r}: an integer format needs a runtime")
    unknown = [d for d in fmt.depends if d not in FORMATS]
    if unknown:
        raise ValueError(f"export format {fmt.name!r} depends on unknown {unknown}")
    FORMATS[fmt.name] = fmt
    return fmt


def resolve(formats: Sequence[str] | str | None, job: ExportJob | None = None) -> list[str]:
    """The names asked for (None or empty: every format, of ``job``'s model every format
    it has), checked against the registry (and against ``job``: a quantization-aware
    format of a float model is refused, named)."""
    if isinstance(formats, str):
        formats = [formats]
    qat = job is None or job.qat_model is not None
    names = list(formats or [n for n, f in FORMATS.items() if qat or not f.needs_qat])
    unknown = [f for f in names if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown formats {unknown}; choose from {tuple(FORMATS)}")
    if not qat:
        wrong = [f for f in names if FORMATS[f].needs_qat]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: only of a quantization-aware model "
                             "(embedding.qat.keras, written by a run with config.qat.steps)")
    return names


# ------------------------------------------------------------------------ the records
def _saved_model(job: ExportJob, path: str, written: dict) -> dict:
    convert.saved_model(job.model, path)
    if not job._saved_model:         # the TFLite converters read this one: none written twice
        job._saved_model = path
    return {}


def _tflite(mode: str) -> Callable[[ExportJob, str, dict], dict]:
    def write(job: ExportJob, path: str, written: dict) -> dict:
        summary: dict = {}
        convert.tflite(job.saved_model_dir(), path, mode, job.calibration, job.io_type,
                       job.int8_ranges, summary)
        if mode != "int8":
            return {}
        return {"io_type": job.io_type, "int8_ranges": job.int8_ranges,
                **({"int8_ranges_summary": summary} if summary else {})}
    return write


def _tflite_mixed(job: ExportJob, path: str, written: dict) -> dict:
    """Full-integer int8 but for the ``job.mixed_float_layers`` ops that add the largest
    error (:func:`kreid.export.convert.layer_errors`), which stay in float."""
    errors = convert.layer_errors(job.saved_model_dir(), job.calibration)
    keep = [r["tensor"] for r in errors[:job.mixed_float_layers]]
    summary: dict = {}
    convert.tflite(job.saved_model_dir(), path, "int8", job.calibration, job.io_type,
                   job.int8_ranges, summary, float_nodes=keep)
    return {"io_type": job.io_type, "int8_ranges": job.int8_ranges,
            "float_layers": [k.split(";")[0] for k in keep],
            **({"int8_ranges_summary": summary} if summary else {})}


def _tflite_qat(job: ExportJob, path: str, written: dict) -> dict:
    convert.tflite(job.qat_saved_model_dir(), path, "fake_quant", io_type=job.io_type)
    return {"io_type": job.io_type, "int8_ranges": "qat"}


def _onnx_float(job: ExportJob, path: str, written: dict) -> dict:
    convert.onnx_float(job.model, path)
    return {}


def _onnx_int8(job: ExportJob, path: str, written: dict) -> dict:
    convert.onnx_int8(written["onnx_float32"], path, job.calibration)
    return {}


register(Format("saved_model", ".savedmodel", _saved_model))
register(Format("tflite_float32", ".float32.tflite", _tflite("float32"), runtime="tflite"))
register(Format("tflite_float16", ".float16.tflite", _tflite("float16"), runtime="tflite"))
register(Format("tflite_dynamic_int8", ".dynamic_int8.tflite", _tflite("dynamic_int8"),
                runtime="tflite", layer_report=True))
register(Format("tflite_int8", ".int8.tflite", _tflite("int8"), runtime="tflite",
                calibrated=True, integer=True, layer_report=True))
register(Format("tflite_int16x8", ".int16x8.tflite", _tflite("int16x8"), runtime="tflite",
                calibrated=True, integer=True))
register(Format("tflite_mixed_int8", ".mixed_int8.tflite", _tflite_mixed, runtime="tflite",
                calibrated=True, integer=True))
register(Format("tflite_qat_int8", ".qat_int8.tflite", _tflite_qat, runtime="tflite",
                integer=True, needs_qat=True))
register(Format("onnx_float32", ".float32.onnx", _onnx_float, runtime="onnx"))
register(Format("onnx_int8", ".int8.onnx", _onnx_int8, runtime="onnx", calibrated=True,
                integer=True, depends=("onnx_float32",)))


# ------------------------------------------------------------------------ writing
def _order(names: list[str]) -> list[str]:
    """``names`` with every dependency before the format that needs it, and a SavedModel
    first (the TFLite converters then read it instead of writing one of their own)."""
    out: list[str] = []

    def add(name: str) -> None:
        for dep in FORMATS[name].depends:
            add(dep)
        if name not in out:
            out.append(name)
    for name in sorted(names, key=lambda n: n != "saved_model"):
        add(name)
    return out


def write_formats(job: ExportJob, out_dir: str,
                  formats: Sequence[str] | None = None) -> dict[str, str]:
    """Write ``formats`` of ``job`` into ``out_dir`` as ``<model><suffix>``, each with its
    sidecar; returns {format: path} of those asked for (a dependency's file is written
    and kept too). An existing file kreid did not write is never replaced
    (:func:`kreid.export.convert.check_replaceable`), checked for every file first."""
    convert.quiet_converters()
    asked = resolve(formats, job)
    todo = _order(asked)
    needs = [f for f in todo if FORMATS[f].calibrated]
    if needs and job.calibration is None:
        raise ValueError(f"{sorted(needs)} need calibration images")
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, job.spec.model_name)
    for name in todo:
        convert.check_replaceable(base + FORMATS[name].suffix)
    written: dict[str, str] = {}
    for name in todo:
        fmt = FORMATS[name]
        path = base + fmt.suffix
        try:
            extra = dict(fmt.write(job, path, written))
            if fmt.runtime:
                extra["runtime"] = fmt.runtime
            if fmt.integer and job.calibration is not None:   # a QAT file may have none
                extra["calibration_fidelity"] = _fidelity(job, fmt, path)
        except BaseException:
            # a file kreid wrote but could not finish has no sidecar yet: it would make the
            # next export refuse the folder as someone else's, so it goes
            if os.path.isfile(path):
                os.remove(path)
            raise
        convert.write_sidecar(path, job.spec, name, extra)
        written[name] = path
    return {name: written[name] for name in asked}


def _fidelity(job: ExportJob, fmt: Format, path: str) -> float:
    """An integer file's fidelity to the float model on 32 calibration images (a collapsed
    quantization is said at once; see :func:`kreid.export.convert.int8_fidelity`)."""
    cal = job.calibration
    spread = np.linspace(0, len(cal) - 1, min(32, len(cal))).astype(int)
    # a QAT file is the fake-quantized model's: measured against it (its float view, which
    # never clips at the learned ranges, is not what it was trained as)
    reference = job.qat_model if fmt.needs_qat else job.model
    fidelity = convert.int8_fidelity(path, reference, cal[spread], runtime=fmt.runtime)
    if not fidelity >= convert.FIDELITY_WARNING:     # NaN too (a non-finite float output)
        log.warning("%s: its embeddings of %d calibration images keep a fidelity of %.2f to "
                    "the float model's (median per image; 1 is exact, 0 a constant "
                    "embedding): this int8 file has lost the model; score it (bin/export.py "
                    "compares every format)%s", path, len(spread), fidelity,
                    " or try --int8_ranges=image_mse, which gives up the few calibration "
                    "images that run far above the rest"
                    if fmt.name == "tflite_int8" and job.int8_ranges != "image_mse" else "")
    return round(fidelity, 4)


def export_all(model, out_dir: str, spec: ExportSpec, formats: Sequence[str] | None = None,
               calibration: np.ndarray | None = None, io_type: str = "int8",
               int8_ranges: str = ranges.DEFAULT) -> dict[str, str]:
    """Write every requested format of an in-memory ``model`` into ``out_dir``; returns
    {format: path} (:func:`write_formats` of an :class:`ExportJob`)."""
    with ExportJob(model, spec, calibration, io_type, int8_ranges) as job:
        return write_formats(job, out_dir, formats)


def export_keras_file(keras_path: str, out_dir: str, calibration_records=None,
                      formats: Sequence[str] | None = None, num_calibration: int = 200,
                      io_type: str = "int8", preprocessing: str | None = None,
                      supply: str = "", int8_ranges: str = ranges.DEFAULT,
                      mixed_float_layers: int = MIXED_FLOAT_LAYERS) -> dict[str, str]:
    """Export a ``.keras`` embedding model (with its sidecar, or ``preprocessing``) to
    ``formats``, calibrating int8 on ``calibration_records``; returns {format: path}."""
    with ExportJob.from_keras_file(keras_path, formats, calibration_records, num_calibration,
                                   io_type, int8_ranges, preprocessing, supply,
                                   mixed_float_layers=mixed_float_layers) as job:
        return write_formats(job, out_dir, formats)


__all__ = ["ExportError", "ExportJob", "ExportSpec", "FORMATS", "Format", "export_all",
           "export_keras_file", "register", "resolve", "write_formats"]
