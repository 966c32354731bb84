"""The embedded default dataset: layout, determinism, attributes, and not-too-easy."""

import filecmp
import os
import re
import time

import cv2
import numpy as np

from kreid.data import datasets, synthetic
from kreid.evaluation.metrics import evaluate


def test_market_layout_and_names(synthetic_root):
    ds = datasets.load("market1501", synthetic_root)
    pattern = re.compile(r"^(\d{4}|-1)_c\d+s\d+_\d{6}_\d{2}\.jpg$")
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        names = os.listdir(os.path.join(synthetic_root, folder))
        assert names and all(pattern.match(n) for n in names), folder
    assert ds.num_train_ids == 12
    assert {r.pid for r in ds.query} <= {r.pid for r in ds.gallery}
    assert 0 in {r.pid for r in ds.gallery}
    assert any(n.startswith("-1_") for n in os.listdir(
        os.path.join(synthetic_root, "bounding_box_test")))
    img = cv2.imread(ds.train[0].path)
    assert img.shape == (128, 64, 3)


def test_deterministic_for_a_seed(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    synthetic.generate(a, num_identities=6, num_cameras=2, seed=5)
    synthetic.generate(b, num_identities=6, num_cameras=2, seed=5)
    cmp = filecmp.dircmp(os.path.join(a, "query"), os.path.join(b, "query"))
    assert cmp.left_list == cmp.right_list and not cmp.diff_files
    c = str(tmp_path / "c")
    synthetic.generate(c, num_identities=6, num_cameras=2, seed=6)
    assert sorted(os.listdir(os.path.join(a, "query"))) != sorted(
        os.listdir(os.path.join(c, "query")))


def test_synthetic_registry_attaches_attributes(synthetic_root):
    ds = datasets.load("synthetic", synthetic_root)
    assert ds.attribute_names == synthetic.ATTRIBUTE_NAMES
    attrs = np.array([r.attributes for r in ds.train])
    assert attrs.shape[1] == len(synthetic.ATTRIBUTE_NAMES)
    assert 0 < attrs.mean() < 1


def test_default_set_generates_quickly(tmp_path):
    start = time.perf_counter()
    meta = synthetic.generate(str(tmp_path), seed=0)  # the default: 200 identities
    assert time.perf_counter() - start < 30
    assert meta["num_train_ids"] == 100 and meta["counts"]["query"] >= 200


def _colour_histogram(path, bins=8, normalise=False):
    img = cv2.imread(path).astype(np.float32)
    if normalise:  # grey-world colour constancy, then the central (person) region
        img = (img / img.reshape(-1, 3).mean(0) * 128)[16:112, 20:44]
        bins = 4
    img = np.clip(img, 0, 255).astype(np.uint8)
    hist = cv2.calcHist([img], [0, 1, 2], None, [bins] * 3, [0, 256] * 3).ravel()
    return hist / hist.sum()


def _histogram_map(ds, normalise):
    q = np.stack([_colour_histogram(r.path, normalise=normalise) for r in ds.query])
    g = np.stack([_colour_histogram(r.path, normalise=normalise) for r in ds.gallery])
    return _map(ds, np.abs(q[:, None] - g[None]).sum(-1))


def _map(ds, dist):
    return evaluate(dist, [r.pid for r in ds.query], [r.pid for r in ds.gallery],
                    [r.camid for r in ds.query], [r.camid for r in ds.gallery])["mAP"]


def test_learnable_but_not_trivial(tmp_path):
    """A colour histogram stays far below perfect mAP; with colour constancy and the
    person's region it beats chance clearly: identity is there, invariance must be learnt."""
    synthetic.generate(str(tmp_path), num_identities=120, seed=1)
    ds = datasets.load("market1501", str(tmp_path))
    chance = _map(ds, np.random.default_rng(0).random((len(ds.query), len(ds.gallery))))
    naive = _histogram_map(ds, normalise=False)
    constancy = _histogram_map(ds, normalise=True)
    assert naive < 0.5, naive
    assert 3 * chance < constancy < 0.6, (chance, constancy)
