"""Embedding with TTA, embedding files, the report, and the embed/evaluate binaries."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from kreid.data import datasets
from kreid.evaluation import runner
from kreid.evaluation.embed import EmbeddingSet, KerasEmbedder, embed_records

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    inputs = keras.Input((32, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(6)(x))
    path = str(tmp_path_factory.mktemp("model") / "tiny.keras")
    model.save(path)
    with open(path + ".json", "w") as f:
        json.dump({"preprocessing": "scale", "input_size": [32, 16]}, f)
    return model, path


def test_tta_averages_views(synthetic_root, tiny_model):
    ds = datasets.load("market1501", synthetic_root)
    emb = KerasEmbedder(tiny_model[0])
    plain = embed_records(emb, ds.query[:5], "none", batch_size=2, progress=False)
    five = embed_records(emb, ds.query[:5], "five_flip", batch_size=2, progress=False)
    assert plain.embeddings.shape == five.embeddings.shape == (5, 6)
    assert not np.allclose(plain.embeddings, five.embeddings)
    norm = embed_records(emb, ds.query[:5], "center_flip", normalize=True, progress=False)
    assert (np.linalg.norm(norm.embeddings, axis=1) <= 1 + 1e-5).all()
    assert list(plain.pid) == [r.pid for r in ds.query[:5]]


def test_embedding_file_round_trip(tmp_path):
    s = EmbeddingSet(np.ones((3, 4), np.float32), np.array([1, 2, 3]), np.array([0, 1, 0]),
                     np.array([-1, -1, -1]), np.array(["a", "b", "c"]), {"tta": "five"})
    path = s.save(str(tmp_path / "x" / "q.npz"))
    back = EmbeddingSet.load(path)
    np.testing.assert_array_equal(back.embeddings, s.embeddings)
    assert list(back.path) == ["a", "b", "c"] and back.meta == {"tta": "five"}
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        EmbeddingSet.load(str(tmp_path / "nope.npz"))


def test_nan_embeddings_are_refused(synthetic_root):
    ds = datasets.load("market1501", synthetic_root)

    class NanEmbedder:
        input_size, preprocessing = (32, 16), "scale"

        def __call__(self, images):
            return np.full((len(images), 4), np.nan, np.float32)

    with pytest.raises(ValueError, match="NaN"):
        embed_records(NanEmbedder(), ds.query[:3], progress=False)


def test_report_files(tmp_path, synthetic_root, tiny_model):
    ds = datasets.load("market1501", synthetic_root)
    res, q, g = runner.evaluate_embedder(KerasEmbedder(tiny_model[0]), ds,
                                         report_dir=str(tmp_path / "report"))
    files = sorted(os.listdir(tmp_path / "report"))
    assert files == ["cmc.png", "embedding_map.png", "metrics.json", "retrieval.png"]
    saved = json.load(open(tmp_path / "report" / "metrics.json"))
    assert saved["mAP"] == pytest.approx(res["mAP"])
    reranked, _ = runner.score(q, g, rerank=True)
    assert 0 <= reranked["mAP"] <= 1


def _run(args):
    env = {**os.environ, "PYTHONPATH": REPO}
    out = subprocess.run([sys.executable] + args, capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=300)
    return out


def test_embed_then_evaluate_binaries(tmp_path, synthetic_root, tiny_model):
    out = _run(["bin/embed.py", "--dataset=market1501", f"--root={synthetic_root}",
                f"--model={tiny_model[1]}", "--tta=center_flip", f"--output={tmp_path}/emb"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "emb")) == ["gallery.npz", "query.npz"]
    out = _run(["bin/evaluate.py", f"--query={tmp_path}/emb/query.npz",
                f"--gallery={tmp_path}/emb/gallery.npz", "--rerank", "--ap=market",
                f"--report_dir={tmp_path}/rep"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "mAP" in out.stdout and "rank-1" in out.stdout
    assert os.path.isfile(tmp_path / "rep" / "metrics.json")
    bad = _run(["bin/evaluate.py", f"--query={tmp_path}/emb/missing.npz",
                f"--gallery={tmp_path}/emb/gallery.npz"])
    assert bad.returncode != 0 and "missing.npz" in bad.stderr


# ---------------------------------------------------------------- reliability (#12.2, 5, 7)
class _Recorder:
    """An Embedder that records how many images each call gets."""

    input_size, preprocessing, fingerprint = (32, 16), "scale", "rec"

    def __init__(self):
        self.calls = []

    def __call__(self, images):
        self.calls.append(len(images))
        return images.reshape(len(images), -1)[:, :6] * 1.0


@pytest.mark.parametrize("tta,budget", [("five_flip", 8), ("five_flip", 3), ("center_flip", 64),
                                        ("none", 5)])
def test_model_calls_stay_within_the_image_budget(synthetic_root, tta, budget):
    ds = datasets.load("market1501", synthetic_root)
    rec = _Recorder()
    out = embed_records(rec, ds.query[:13], tta, batch_size=budget, progress=False)
    assert max(rec.calls) <= budget
    from kreid.data.augment import num_views
    assert sum(rec.calls) == 13 * num_views(tta)
    ref = embed_records(_Recorder(), ds.query[:13], tta, batch_size=10_000, progress=False)
    np.testing.assert_allclose(out.embeddings, ref.embeddings, rtol=1e-6)
    assert out.meta["fingerprint"] == "rec"


def test_keras_embedder_is_compiled_once(tiny_model):
    emb = KerasEmbedder(tiny_model[0])
    for n in (1, 7, 3):
        assert emb(np.zeros((n, 32, 16, 3), np.float32)).shape == (n, 6)
    assert emb._forward.experimental_get_tracing_count() == 1


def test_text_file_named_npz_is_named(tmp_path):
    bad = tmp_path / "query.npz"
    bad.write_text("not numpy")
    with pytest.raises(ValueError, match="query.npz: not a kreid embedding file") as err:
        EmbeddingSet.load(str(bad))
    assert "allow_pickle" not in str(err.value)


def test_keras_model_without_sidecar_needs_preprocessing(tmp_path, tiny_model):
    from kreid.evaluation.embed import load_embedder
    from kreid_edge import SidecarError

    bare = str(tmp_path / "bare.keras")
    tiny_model[0].save(bare)
    with pytest.raises(SidecarError, match="bare.keras.json.*--preprocessing"):
        load_embedder(bare, supply="pass --preprocessing")
    assert load_embedder(bare, preprocessing="imagenet").preprocessing == "imagenet"
    assert load_embedder(tiny_model[1]).fingerprint == load_embedder(bare,
                                                                     preprocessing="scale").fingerprint


def test_a_missing_model_file_is_named_as_such(tmp_path):
    """Not as a missing sidecar: the model itself is what the user mistyped."""
    from kreid.evaluation.embed import keras_sidecar

    missing = str(tmp_path / "nope.keras")
    for preprocessing in (None, "scale"):
        with pytest.raises(FileNotFoundError, match=f"model file not found: {missing}$"):
            keras_sidecar(missing, preprocessing, "pass --preprocessing")


def test_embeddings_of_different_models_are_not_compared(tmp_path, synthetic_root, tiny_model):
    from kreid.errors import ModelMismatchError

    ds = datasets.load("market1501", synthetic_root)
    other = keras.models.clone_model(tiny_model[0])          # new random weights
    other_path = str(tmp_path / "other.keras")
    other.save(other_path)
    json.dump({"preprocessing": "scale", "input_size": [32, 16]}, open(other_path + ".json", "w"))
    for model, name in ((tiny_model[1], "a"), (other_path, "b")):
        out = _run(["bin/embed.py", "--dataset=market1501", f"--root={synthetic_root}",
                    f"--model={model}", f"--output={tmp_path}/{name}"])
        assert out.returncode == 0, out.stderr[-2000:]
    q, g = EmbeddingSet.load(f"{tmp_path}/a/query.npz"), EmbeddingSet.load(f"{tmp_path}/b/gallery.npz")
    assert q.meta["model"] == tiny_model[1] and q.fingerprint != g.fingerprint
    with pytest.raises(ModelMismatchError, match="different models"):
        runner.score(q, g)
    mixed = [f"--query={tmp_path}/a/query.npz", f"--gallery={tmp_path}/b/gallery.npz"]
    out = _run(["bin/evaluate.py", *mixed])
    assert out.returncode != 0 and "different models" in out.stderr
    assert _run(["bin/evaluate.py", *mixed, "--allow_mixed_models"]).returncode == 0
    assert len(ds.query) == len(q)


def test_empty_query_file_says_so(tmp_path):
    empty = EmbeddingSet(np.zeros((0, 4), np.float32), np.zeros(0, int), np.zeros(0, int),
                         np.zeros(0, int), np.array([], str))
    empty.save(str(tmp_path / "q.npz"))
    full = EmbeddingSet(np.ones((3, 4), np.float32), np.arange(3), np.zeros(3, int),
                        np.zeros(3, int), np.array(["a", "b", "c"]))
    full.save(str(tmp_path / "g.npz"))
    out = _run(["bin/evaluate.py", f"--query={tmp_path}/q.npz", f"--gallery={tmp_path}/g.npz"])
    assert out.returncode != 0 and "q.npz: the embedding file holds no embeddings" in out.stderr
    from kreid.errors import EmptySplitError
    with pytest.raises(EmptySplitError, match="query set is empty"):
        runner.score(empty, full)
    with pytest.raises(EmptySplitError, match="no images to embed"):
        embed_records(_Recorder(), [], progress=False)
