"""The export-format registry: a format is one record; every consumer reads the registry
(kreid.export.formats, #25)."""

import json
import os

import keras
import numpy as np
import pytest

from kreid.export import compare, convert, formats
from kreid.training.artifacts import save_trained_model

SIZE = (64, 32)


def _tiny_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((*SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(8)(x), name="tiny")


def _calibration(n=16):
    return np.random.default_rng(0).random((n, *SIZE, 3)).astype(np.float32)


def test_records_say_what_every_consumer_needs():
    assert list(formats.FORMATS) == ["saved_model", "tflite_float32", "tflite_float16",
                                     "tflite_dynamic_int8", "tflite_int8", "tflite_int16x8",
                                     "tflite_mixed_int8", "tflite_qat_int8", "onnx_float32",
                                     "onnx_int8"]
    calibrated = {n for n, f in formats.FORMATS.items() if f.calibrated}
    assert calibrated == {"tflite_int8", "tflite_int16x8", "tflite_mixed_int8", "onnx_int8"}
    assert [n for n, f in formats.FORMATS.items() if f.needs_qat] == ["tflite_qat_int8"]
    assert {n: f.runtime for n, f in formats.FORMATS.items()}["saved_model"] is None
    assert formats.FORMATS["onnx_int8"].depends == ("onnx_float32",)
    with pytest.raises(ValueError, match=r"unknown formats \['tflite_int4'\]; choose from"):
        formats.resolve(["tflite_int4"])
    assert formats.resolve(None) == list(formats.FORMATS)


def test_the_registry_refuses_a_clashing_record():
    def write(job, path, written):
        return {}

    with pytest.raises(ValueError, match="'tflite_int8' is registered already"):
        formats.register(formats.Format("tflite_int8", ".x.tflite", write, runtime="tflite"))
    with pytest.raises(ValueError, match="suffix '.int8.tflite' is tflite_int8's"):
        formats.register(formats.Format("mine", ".int8.tflite", write, runtime="tflite"))
    with pytest.raises(ValueError, match="an integer format needs a runtime"):
        formats.register(formats.Format("mine", ".mine", write, integer=True))
    assert "mine" not in formats.FORMATS


def test_an_unfinished_file_is_removed_and_the_temporaries_too(tmp_path, monkeypatch):
    """A fidelity check that fails leaves no sidecar-less file (the next export would refuse
    the folder as someone else's), and the job's temporary SavedModel goes with it."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def broken(*args, **kwargs):
        raise RuntimeError("runtime crashed")

    monkeypatch.setattr(convert, "int8_fidelity", broken)
    spec = convert.ExportSpec(SIZE, "scale", "tiny")
    with pytest.raises(RuntimeError, match="runtime crashed"):
        formats.export_all(_tiny_model(), str(tmp_path / "out"), spec, ["tflite_int8"],
                           _calibration())
    assert os.listdir(tmp_path / "out") == []
    assert not [f for f in os.listdir(tmp_path / "tmp") if f.startswith(".kreid-export-")]
    monkeypatch.undo()
    paths = formats.export_all(_tiny_model(), str(tmp_path / "out"), spec,
                               ["tflite_float32", "saved_model"])
    assert sorted(paths) == ["saved_model", "tflite_float32"]


def _op_dtypes(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path)
    details = interp.get_tensor_details()
    return [(op["op_name"], details[op["outputs"][0]]["dtype"])
            for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]  # noqa: SLF001


def test_mixed_int8_keeps_the_most_sensitive_layers_in_float(tmp_path):
    """k = 0 is the full-integer file; k = 1 keeps exactly the op TFLite's debugger ranks
    first in float, between a DEQUANTIZE and a QUANTIZE; int16x8 keeps int16 activations."""
    model, cal = _tiny_model(), _calibration()
    spec = convert.ExportSpec(SIZE, "scale", "tiny")
    with formats.ExportJob(model, spec, cal, mixed_float_layers=0) as job:
        zero = formats.write_formats(job, str(tmp_path / "k0"),
                                     ["tflite_mixed_int8", "tflite_int8", "tflite_int16x8"])
        worst = convert.layer_errors(job.saved_model_dir(), cal)[0]["tensor"]
    assert _op_dtypes(zero["tflite_mixed_int8"]) == _op_dtypes(zero["tflite_int8"])
    assert all(t == np.int16 for op, t in _op_dtypes(zero["tflite_int16x8"])
               if op not in ("QUANTIZE", "DEQUANTIZE"))
    with formats.ExportJob(model, spec, cal, mixed_float_layers=1) as job:
        one = formats.write_formats(job, str(tmp_path / "k1"), ["tflite_mixed_int8"])
    meta = json.load(open(one["tflite_mixed_int8"] + ".json"))
    assert meta["float_layers"] == [worst.split(";")[0]]
    ops = _op_dtypes(one["tflite_mixed_int8"])
    floats = [op for op, t in ops if t == np.float32 and op not in ("DEQUANTIZE",)]
    assert len(floats) == 1 and ("DEQUANTIZE", np.float32) in ops
    assert [op for op, t in ops if t == np.int8 and op != "QUANTIZE"]


def test_a_dependency_is_written_first_and_each_sidecar_once(tmp_path, monkeypatch):
    model = _tiny_model()
    spec = convert.ExportSpec(SIZE, "scale", "tiny", "f" * 16)
    writes = []
    real = convert.write_sidecar
    monkeypatch.setattr(convert, "write_sidecar",
                        lambda path, *a, **k: writes.append(os.path.basename(path))
                        or real(path, *a, **k))
    paths = formats.export_all(model, str(tmp_path), spec, ["onnx_int8"], _calibration())
    assert list(paths) == ["onnx_int8"]
    assert writes == ["tiny.float32.onnx", "tiny.int8.onnx"]     # the float file first, once
    meta = json.load(open(paths["onnx_int8"] + ".json"))
    assert meta["format"] == "onnx_int8" and meta["runtime"] == "onnx"
    assert meta["source_fingerprint"] == "f" * 16 and 0.5 < meta["calibration_fidelity"] <= 1
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]   # no temporaries


def test_a_new_format_is_one_record(tmp_path, synthetic_root):
    """Registered here and nowhere else: exported, given its runtime in the sidecar, loaded
    by kreid_edge without kreid_edge knowing it, and scored by the comparison table."""
    from kreid.data import datasets
    from kreid_edge import load_embedder

    def write(job, path, written):
        convert.tflite(job.saved_model_dir(), path, "float16")
        return {"note": "a float16 twin"}

    formats.register(formats.Format("test_half", ".half.bin", write, runtime="tflite"))
    try:
        model = _tiny_model()
        keras_path = save_trained_model(model, {}, str(tmp_path), "tiny", "synthetic", SIZE,
                                        "scale", 0)
        ds = datasets.load("market1501", synthetic_root)
        table = compare.export_and_compare(keras_path, ds, str(tmp_path / "out"),
                                           ["test_half"], latency_runs=2)
        (row,) = [r for r in table["rows"] if r["format"] == "test_half"]
        assert row["cosine"] > 0.999 and abs(row["delta_mAP"]) < 1.0
        path = str(tmp_path / "out" / "tiny.half.bin")     # loaded by the runtime its sidecar names
        meta = json.load(open(path + ".json"))
        assert meta["runtime"] == "tflite" and meta["note"] == "a float16 twin"
        x = _calibration(2)
        np.testing.assert_allclose(load_embedder(path)(x), model(x).numpy(), atol=1e-2)
        assert "| test_half |" in compare.markdown_table(table)
    finally:
        del formats.FORMATS["test_half"]
