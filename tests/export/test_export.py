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
from kreid.export import compare, convert, formats

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
    paths = formats.export_all(model, str(work / "out"), spec, calibration=cal)
    return model, path, paths, ds, cal, spec


def test_every_format_written_with_sidecar(exported):
    _, _, paths, *_ = exported
    assert set(paths) == {n for n, f in formats.FORMATS.items() if not f.needs_qat}
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
        formats.export_all(model, "/tmp/never", spec, ["tflite_int8"], cal[:3])
    with pytest.raises(ValueError, match=r"\[N, 64, 32, 3\]"):
        formats.export_all(model, "/tmp/never", spec, ["tflite_int8"], cal[:, :32])
    with pytest.raises(ValueError, match="at least"):
        convert.calibration_images(ds.train, spec, 2)
    with pytest.raises(ValueError, match="need calibration"):
        formats.export_all(model, "/tmp/never", spec, ["onnx_int8"], None)


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


# ---------------------------------------------------------------- reliability (#12.5, #12.6)
def _edge_env():
    return {**os.environ, "PYTHONPATH": os.path.join(REPO, "export")}


def test_runtimes_survive_an_empty_batch(exported):
    from kreid_edge import load_embedder

    _, _, paths, ds, cal, _ = exported
    for fmt in ("tflite_int8", "tflite_float32", "onnx_float32"):
        emb = load_embedder(paths[fmt])
        before = emb(cal[:3])
        assert emb(cal[:0]).shape == (0, 32), fmt
        assert emb.embed_images([]).shape == (0, 32), fmt
        np.testing.assert_array_equal(emb(cal[:3]), before)     # still works afterwards


def test_matcher_self_distance_empty_query_and_saved_path(exported, tmp_path):
    from kreid_edge import GalleryMatcher, load_embedder

    _, _, paths, ds, _, _ = exported
    m = GalleryMatcher(load_embedder(paths["tflite_int8"]))
    images = [r.path for r in ds.gallery[:6]]
    m.enroll(images, [r.pid for r in ds.gallery[:6]])
    assert m.match([]) == []
    identical = 0
    for i, path in enumerate(images):
        query = m.embedder.embed_images([path])
        same = np.array_equal(query[0], m.embeddings[i])
        best = m.match([path], top_k=1)[0][0]
        if same:                                   # identical vectors: distance ~0
            assert best[0] == str(ds.gallery[i].pid) and best[1] < 1e-5, (i, best)
            identical += 1
    assert identical >= 1                          # int8 at batch 1 vs 6 is deterministic
    assert m.save(str(tmp_path / "g")) == str(tmp_path / "g.npz")
    assert os.path.isfile(tmp_path / "g.npz")


def test_matcher_distances_survive_a_large_common_offset():
    from kreid_edge import GalleryMatcher

    class Fixed:                                   # embeddings with a big shared offset
        fingerprint, path = "f", "fixed"

        def __init__(self, table):
            self.table = table

        def embed_images(self, images):
            return np.stack([self.table[i] for i in images])

    rng = np.random.default_rng(0)
    table = {f"im{i}": (1000 + 0.1 * rng.normal(size=16)).astype(np.float32) for i in range(8)}
    m = GalleryMatcher(Fixed(table))
    m.enroll(list(table), list(range(8)))
    for i, name in enumerate(table):
        ident, d = m.match([name], top_k=1)[0][0]
        assert ident == str(i) and d < 1e-5
    spread = np.linalg.norm(table["im0"] - table["im1"])
    assert abs(m.match(["im0"], top_k=2)[0][1][1] - spread) < 1e-3 * spread


def test_gallery_of_another_model_is_refused(exported, tmp_path):
    from kreid_edge import GalleryError, GalleryMatcher, load_embedder

    _, _, paths, ds, _, _ = exported
    m = GalleryMatcher(load_embedder(paths["tflite_int8"]))
    m.enroll([r.path for r in ds.gallery[:4]], [r.pid for r in ds.gallery[:4]])
    saved = m.save(str(tmp_path / "g.npz"))
    other = GalleryMatcher(load_embedder(paths["tflite_float32"]))
    with pytest.raises(GalleryError, match="different models"):
        other.load(saved)
    run = [sys.executable, "-m", "kreid_edge"]
    out = subprocess.run(run + ["match", "--model", paths["tflite_float32"], "--gallery", saved,
                                "--query", ds.query[0].path], capture_output=True, text=True,
                         env=_edge_env())
    assert out.returncode == 2 and "different models" in out.stderr
    assert "Traceback" not in out.stderr


def test_device_cli_refuses_truncated_jpeg_and_names_real_output(exported, tmp_path):
    _, _, paths, ds, _, _ = exported
    data = open(ds.query[0].path, "rb").read()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[:len(data) // 2])
    gallery = tmp_path / "people" / "7"
    gallery.mkdir(parents=True)
    os.symlink(ds.gallery[0].path, gallery / "a.jpg")
    run = [sys.executable, "-m", "kreid_edge"]
    out = subprocess.run(run + ["enroll", "--model", paths["tflite_int8"], "--gallery",
                                str(tmp_path / "people"), "--out", str(tmp_path / "g")],
                         capture_output=True, text=True, env=_edge_env())
    assert out.returncode == 0 and str(tmp_path / "g.npz") in out.stdout, out.stderr[-2000:]
    out = subprocess.run(run + ["match", "--model", paths["tflite_int8"], "--gallery",
                                str(tmp_path / "g.npz"), "--query", str(cut)],
                         capture_output=True, text=True, env=_edge_env())
    assert out.returncode == 2 and "cut.jpg" in out.stderr and "truncated" in out.stderr


def test_keras_model_without_sidecar_needs_preprocessing(exported, tmp_path):
    from kreid_edge import SidecarError, read_sidecar

    model, _, _, ds, _, _ = exported
    bare = str(tmp_path / "bare.keras")
    model.save(bare)
    with pytest.raises(SidecarError, match="--preprocessing"):
        formats.export_keras_file(bare, str(tmp_path / "out"), ds.train, ["tflite_float32"],
                                  supply="pass --preprocessing")
    out = formats.export_keras_file(bare, str(tmp_path / "out"), ds.train, ["tflite_float32"],
                                    preprocessing="imagenet")
    side = read_sidecar(out["tflite_float32"])
    assert side.preprocessing == "imagenet" and len(side.extra["source_fingerprint"]) == 16
    cmd = subprocess.run([sys.executable, "bin/export.py", f"--model={bare}",
                          "--dataset=market1501", f"--root={ds.root}", "--nocompare",
                          f"--out={tmp_path}/out2", "--formats=tflite_float32"], cwd=REPO,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert cmd.returncode != 0 and "--preprocessing" in cmd.stderr


def test_export_never_replaces_a_file_it_did_not_write(exported, tmp_path):
    model, _, _, _, cal, spec = exported
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / f"{spec.model_name}.float32.tflite"
    foreign.write_bytes(b"the user's own model")
    with pytest.raises(convert.ExportError, match="not written by kreid"):
        formats.export_all(model, str(out), spec, ["tflite_float32"])
    assert foreign.read_bytes() == b"the user's own model"
    foreign.unlink()
    first = formats.export_all(model, str(out), spec, ["tflite_float32"])
    again = formats.export_all(model, str(out), spec, ["tflite_float32"])   # ours: replaced
    assert first == again and not os.path.exists(out / f"{spec.model_name}.savedmodel")
    assert sorted(os.listdir(out)) == [f"{spec.model_name}.float32.tflite",
                                       f"{spec.model_name}.float32.tflite.json"]


def test_cosine_column_is_exact_for_identical_tiny_embeddings():
    x = np.full((3, 8), 1e-8, np.float32)
    np.testing.assert_array_equal(compare.cosine_to_reference(x, x), [1.0, 1.0, 1.0])
    y = x.copy()
    y[1] = -y[1]
    y[2] = 0
    np.testing.assert_allclose(compare.cosine_to_reference(y, x), [1.0, -1.0, 0.0])
