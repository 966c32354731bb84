"""Converters, the TensorFlow-free runtime, the matcher/CLI and the quantized-accuracy table."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kreid.data import datasets
from kreid.export import compare, convert

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = (64, 32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, synthetic_root):
    """A briefly trained edge model (an untrained net's activations are unlike any
    deployed model's), exported to every format."""
    from kreid.training.config import base_config
    from kreid.training.trainer import Trainer

    work = tmp_path_factory.mktemp("export")
    c = base_config()
    c.dataset.root = synthetic_root
    c.model.name, c.model.embedding_dim, c.image_size = "mobilenet_edge", 32, SIZE
    c.batch.p, c.batch.k = 8, 4
    c.losses = dict(am_softmax=dict(weight=1.0), batch_hard=dict(weight=1.0))
    c.schedule = dict(kind="constant", base_lr=1e-3)
    c.total_steps, c.log_every, c.checkpoint_every = 60, 60, 0
    Trainer(c, str(work / "train"), progress=False).run()
    path = str(work / "train" / "embedding.keras")
    model = keras.models.load_model(path)
    ds = datasets.load("market1501", synthetic_root)
    spec = convert.ExportSpec(SIZE, "scale", "edge")
    # 60 steps leave batch norm's moving statistics half-initialised (momentum 0.99):
    # re-estimate them on training images, as for any short fine-tune.
    stats = convert.calibration_images(ds.train, spec, 96, seed=1)
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    for bn in bns:
        bn.momentum = 0.0
    model(stats, training=True)
    for bn in bns:
        bn.momentum = 0.99
    model.save(path)
    spread = model(stats[:16], training=False).numpy().std(0).mean()
    assert spread > 1e-3, f"collapsed fixture model (embedding spread {spread})"
    cal = convert.calibration_images(ds.train, spec, 16)
    paths = convert.export_all(model, str(work / "out"), spec, calibration=cal)
    return model, path, paths, ds, cal, spec


def test_every_format_written_with_sidecar(exported):
    _, _, paths, *_ = exported
    assert set(paths) == set(convert.FORMATS)
    for fmt, path in paths.items():
        assert os.path.exists(path) and os.path.isfile(path + ".json"), fmt
        meta = json.load(open(path + ".json"))
        assert meta["input_size"] == list(SIZE) and meta["preprocessing"] == "scale"
    leftovers = [f for f in os.listdir(os.path.dirname(paths["tflite_int8"])) if "tmp" in f]
    assert not leftovers


def test_float_runtimes_match_keras(exported):
    from kreid_edge import load_embedder

    model, _, paths, ds, cal, _ = exported
    want = model(cal[:4], training=False).numpy()
    for fmt in ("tflite_float32", "onnx_float32"):
        got = load_embedder(paths[fmt])(cal[:4])
        assert np.abs(got - want).max() <= 1e-4, fmt


def test_int8_models_stay_close(exported):
    from kreid_edge import load_embedder

    model, _, paths, ds, cal, _ = exported
    want = model(cal, training=False).numpy()
    for fmt in ("tflite_int8", "tflite_dynamic_int8", "tflite_float16", "onnx_int8"):
        got = load_embedder(paths[fmt])(cal)
        cos = np.sum(got * want, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
        assert cos.mean() > 0.95, (fmt, cos.mean())
    ops = convert.tflite_ops(paths["tflite_int8"])
    assert "CONV_2D" in ops and "DEPTHWISE_CONV_2D" in ops
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=paths["tflite_int8"])
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert os.path.getsize(paths["tflite_int8"]) < 0.35 * os.path.getsize(paths["tflite_float32"])


def test_bad_calibration_refused(exported):
    model, _, _, ds, cal, spec = exported
    with pytest.raises(ValueError, match="too small"):
        convert.export_all(model, "/tmp/never", spec, ["tflite_int8"], cal[:3])
    with pytest.raises(ValueError, match=r"\[N, 64, 32, 3\]"):
        convert.export_all(model, "/tmp/never", spec, ["tflite_int8"], cal[:, :32])
    with pytest.raises(ValueError, match="at least"):
        convert.calibration_images(ds.train, spec, 2)
    with pytest.raises(ValueError, match="need calibration"):
        convert.export_all(model, "/tmp/never", spec, ["onnx_int8"], None)


def test_unsupported_op_is_named(tmp_path):
    inputs = keras.Input((8, 8, 3))

    class Erf(keras.layers.Layer):
        def call(self, x):
            return tf.math.erf(x)

    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(Erf()(
        keras.layers.Conv2D(4, 3)(inputs))))
    sm = convert.saved_model(model, str(tmp_path / "sm"))
    cal = np.random.default_rng(0).random((8, 8, 8, 3)).astype(np.float32)
    with pytest.raises(convert.ExportError, match="Erf"):
        convert.tflite(sm, str(tmp_path / "m.tflite"), "int8", cal)
    assert not os.path.exists(tmp_path / "m.tflite")


def test_runtime_refuses_wrong_inputs(exported, tmp_path):
    from kreid_edge import SidecarError, TFLiteEmbedder, load_embedder

    _, _, paths, *_ = exported
    emb = load_embedder(paths["tflite_int8"])
    with pytest.raises(ValueError, match=r"\[B, 64, 32, 3\]"):
        emb(np.zeros((1, 128, 64, 3), np.float32))
    with pytest.raises(TypeError, match="float32"):
        emb(np.zeros((1, 64, 32, 3), np.uint8))
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(open(paths["tflite_float32"], "rb").read())
    with pytest.raises(SidecarError, match="bare.tflite.json"):
        TFLiteEmbedder(str(bare))
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        load_embedder(str(tmp_path / "nope.onnx"))


def test_opencv_preprocessing_matches_training_pipeline(exported):
    from kreid_edge import Preprocessor

    *_, ds, _, spec = exported
    recs = ds.query[:6]
    tf_batch = np.concatenate([np.asarray(b)[:, 0] for b in __import__(
        "kreid.data.pipeline", fromlist=["x"]).eval_dataset(recs, SIZE, "none", "scale")])
    cv_batch = Preprocessor(SIZE, "scale")([r.path for r in recs])
    assert np.abs(tf_batch - cv_batch).max() < 1e-5      # same decoder, same resize


def test_edge_package_never_imports_tensorflow(exported, tmp_path):
    _, _, paths, ds, _, _ = exported
    code = (
        "import sys, numpy as np\n"
        "import kreid_edge\n"
        "from kreid_edge import load_embedder, GalleryMatcher\n"
        f"m = GalleryMatcher(load_embedder({paths['tflite_int8']!r}, 1))\n"
        f"m.enroll({[r.path for r in ds.gallery[:6]]!r}, {[r.pid for r in ds.gallery[:6]]!r})\n"
        f"print(m.match({[ds.query[0].path]!r}, top_k=2))\n"
        f"load_embedder({paths['onnx_int8']!r}).embed_images({[ds.query[0].path]!r})\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "assert 'keras' not in sys.modules\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.join(REPO, "export")})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_device_cli_enroll_and_match(exported, tmp_path):
    _, _, paths, ds, _, _ = exported
    gallery = tmp_path / "people"
    for r in ds.gallery[:8]:
        (gallery / str(r.pid)).mkdir(parents=True, exist_ok=True)
        os.symlink(r.path, gallery / str(r.pid) / os.path.basename(r.path))
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "export")}
    run = [sys.executable, "-m", "kreid_edge"]
    out = subprocess.run(run + ["enroll", "--model", paths["tflite_int8"], "--gallery",
                                str(gallery), "--out", str(tmp_path / "g.npz")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    out = subprocess.run(run + ["match", "--model", paths["tflite_int8"], "--gallery",
                                str(tmp_path / "g.npz"), "--query", ds.query[0].path,
                                "--top_k", "2"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and ds.query[0].path in out.stdout, out.stderr[-2000:]


def test_quantized_accuracy_table(exported, tmp_path):
    _, keras_path, _, ds, _, _ = exported
    table = compare.export_and_compare(keras_path, ds, str(tmp_path / "cmp"),
                                       formats=["saved_model", "tflite_float32", "tflite_int8",
                                                "onnx_float32"],
                                       num_calibration=16, latency_runs=3, threshold=-100)
    names = [r["format"] for r in table["rows"]]
    assert names == ["keras_float32", "tflite_float32", "tflite_int8", "onnx_float32"]
    rows = {r["format"]: r for r in table["rows"]}
    assert abs(rows["tflite_float32"]["delta_mAP"]) < 0.5
    assert rows["onnx_float32"]["cosine"] > 0.9999
    assert rows["tflite_int8"]["latency_ms_1t"] > 0 and rows["tflite_int8"]["size_mb"] > 0
    assert rows["tflite_int8"]["worst_layers"]           # threshold -100: always debugged
    md = open(tmp_path / "cmp" / "quantized_accuracy.md").read()
    assert "tflite_int8" in md and "RMSE/scale" in md
