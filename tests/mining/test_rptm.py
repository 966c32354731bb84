"""RPTM relational matrix: GMS counts, parallel build, cache, resume, positive selection."""

import os

import numpy as np
import pytest

from kreid.data import datasets
from kreid.errors import ImageReadError, SamplerError
from kreid.mining import rptm


@pytest.fixture(scope="module")
def records(synthetic_root):
    ds = datasets.load("market1501", synthetic_root)
    by_pid = {}
    for r in ds.train:
        by_pid.setdefault(r.pid, []).append(r)
    return [r for pid in sorted(by_pid)[:5] for r in by_pid[pid]]


def test_gms_counts_more_matches_for_the_same_image(records):
    import cv2

    config = rptm.GMSConfig()
    block = rptm.identity_block([records[0].path, records[0].path, records[1].path], config)
    assert (np.diag(block) == -1).all() and (block == block.T).all()
    assert block[0, 1] > block[0, 2] >= 0          # identical images match best
    assert block[0, 1] > 10
    assert hasattr(cv2.xfeatures2d, "matchGMS")


def test_build_cache_and_resume(tmp_path, records):
    paths, pids = [r.path for r in records], [r.pid for r in records]
    partial = rptm.build_relational_matrix(paths, pids, str(tmp_path), workers=1,
                                           max_identities=2, part_size=1)
    assert partial is None                         # stopped early, as if killed
    root = next(d for d in os.listdir(tmp_path) if d.startswith("rptm_"))
    assert len(os.listdir(tmp_path / root)) == 2   # two finished identities on disk
    full = rptm.build_relational_matrix(paths, pids, str(tmp_path), workers=2)
    assert len(os.listdir(tmp_path / root)) == 3   # only the remaining three were computed
    again = rptm.build_relational_matrix(paths, pids, str(tmp_path), workers=1)
    for pid in full.members:
        np.testing.assert_array_equal(full.blocks[pid], again.blocks[pid])
        block = full.blocks[pid]
        assert block.shape == (len(full.members[pid]),) * 2 and (block == block.T).all()
    fresh = rptm.build_relational_matrix(paths, pids, str(tmp_path / "fresh"), workers=1)
    for pid in full.members:                       # resumed == computed in one go
        np.testing.assert_array_equal(full.blocks[pid], fresh.blocks[pid])
    assert full.num_pairs == sum(len(m) * (len(m) - 1) for m in full.members.values())
    idx, counts = full.row(0)
    assert 0 in idx and counts[list(idx).index(0)] == -1


def test_unreadable_image_is_named(tmp_path, records):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        rptm.build_relational_matrix([records[0].path, str(bad)], [1, 1], str(tmp_path / "c"),
                                     workers=1)


def test_select_positive_modes():
    cand = np.array([10, 11, 12, 13, 14])
    counts = np.array([-1, 0, 30, 12, 40])         # anchor is 10; non-zero mean = 27.33
    assert rptm.select_positive(cand, counts, "mean") == 12          # fewest > 27.33
    assert rptm.select_positive(cand, counts, "min", tau=10) == 13   # fewest > 10
    # "exceed tau" (Sec. 4.2), strictly: a count equal to tau is not above it (#29)
    assert rptm.select_positive(cand, counts, "min", tau=12) == 12   # 30, not 12
    assert rptm.select_positive(cand, counts, "min", tau=30) == 14
    assert rptm.select_positive(cand, counts, "max") == 14
    assert rptm.select_positive(cand, np.array([-1, 0, 0, 0, 0]), "mean") == 11
    with pytest.raises(SamplerError):
        rptm.select_positive(cand[:1], counts[:1])
    with pytest.raises(ValueError, match="mode"):
        rptm.select_positive(cand, counts, "median")


def test_positive_has_relational_indicator_one():
    """Sec. 4.2: the positive must have C = 1, i.e. more than tau matches."""
    ids = np.array([1, 2, 3])
    assert rptm.select_positive(ids, np.array([5, 30, 100]), "mean") == 3     # tau = 45
    assert rptm.select_positive(ids, np.array([0, 8, 25]), "min", tau=10) == 3
    assert rptm.select_positive(ids, np.array([0, 21, 50]), "min", tau=25) == 3
    # nothing reaches a fixed tau: the most-matched image, never a zero-match one
    assert rptm.select_positive(ids, np.array([0, 3, 7]), "min", tau=10) == 3
    # [0, 0, 10, 30]: zeros ignored in the mean (tau = 20) -> 30
    assert rptm.select_positive(np.arange(4), np.array([0, 0, 10, 30]), "mean") == 3
    # the two-sided reading is kept as an option
    assert rptm.select_positive(ids, np.array([5, 30, 100]), "mean", side="nearest") == 2
    with pytest.raises(ValueError, match="side"):
        rptm.select_positive(ids, np.array([5, 30, 100]), side="below")


def test_gms_uses_orientation_and_the_papers_settings(monkeypatch):
    import cv2

    calls = {}
    real_gms, real_orb = cv2.xfeatures2d.matchGMS, cv2.ORB_create

    def gms(size1, size2, kp1, kp2, matches, **kw):
        calls["gms"] = (size1, size2, kw)
        return real_gms(size1, size2, kp1, kp2, matches, **kw)

    def orb(**kw):
        calls["orb"] = kw
        return real_orb(**kw)

    monkeypatch.setattr(cv2.xfeatures2d, "matchGMS", gms)
    monkeypatch.setattr(cv2, "ORB_create", orb)
    rng = np.random.default_rng(0)
    img = (rng.random((224, 224)) * 255).astype(np.uint8)
    o = real_orb(nfeatures=500)
    kp, d = o.detectAndCompute(img, None)
    rptm.gms_matches(kp, d, kp, d, rptm.GMSConfig(), cv2.BFMatcher(cv2.NORM_HAMMING))
    size1, size2, kw = calls["gms"]
    assert size1 == size2 == (224, 224)
    assert kw == {"withRotation": True, "withScale": False, "thresholdFactor": 6.0}
    assert rptm.GMSConfig().n_features == 10000


def test_sampler_pairs_anchor_and_positive():
    members = {1: np.array([0, 1, 2]), 2: np.array([3, 4]), 3: np.array([5, 6, 7, 8]),
               4: np.array([9])}
    blocks = {1: np.array([[-1, 5, 9], [5, -1, 2], [9, 2, -1]]), 2: np.array([[-1, 3], [3, -1]]),
              3: np.array([[-1, 1, 2, 3], [1, -1, 4, 5], [2, 4, -1, 6], [3, 5, 6, -1]]),
              4: np.array([[-1]])}
    matrix = rptm.RelationalMatrix(members, blocks, 10)
    sampler = rptm.RPTMSampler(matrix, p=3, k=4, mode="max", seed=0, layout="pairs")
    for step in range(20):
        idx, pos = sampler.batch_at(step), sampler.positives_at(step)
        assert len(idx) == 12 and 9 not in idx     # single-image identity never drawn
        assert (pos >= 0).sum() == 6               # pairs: half the batch anchors
        for a in np.flatnonzero(pos >= 0):
            cand, counts = matrix.row(int(idx[a]))
            assert idx[pos[a]] == rptm.select_positive(cand, counts, "max")
    with pytest.raises(SamplerError, match="even K"):
        rptm.RPTMSampler(matrix, p=2, k=3, layout="pairs")
    with pytest.raises(SamplerError, match="P=4"):
        rptm.RPTMSampler(matrix, p=4, k=2)
    with pytest.raises(SamplerError, match="layout"):
        rptm.RPTMSampler(matrix, p=2, k=2, layout="triplets")


def test_every_sampled_image_anchors_with_its_positive_appended():
    """The default layout (#29, the paper and the authors' code): every one of the P x K
    sampled images anchors, its RPTM positive in the second half of the batch (the
    appended positives do not anchor); K may be odd."""
    members = {1: np.array([0, 1, 2]), 2: np.array([3, 4]), 3: np.array([5, 6, 7, 8])}
    blocks = {1: np.array([[-1, 5, 9], [5, -1, 2], [9, 2, -1]]), 2: np.array([[-1, 3], [3, -1]]),
              3: np.array([[-1, 1, 2, 3], [1, -1, 4, 5], [2, 4, -1, 6], [3, 5, 6, -1]])}
    matrix = rptm.RelationalMatrix(members, blocks, 10)
    sampler = rptm.RPTMSampler(matrix, p=2, k=3, mode="mean", seed=1)
    assert sampler.batch_size == 12
    for step in range(10):
        idx, pos = sampler.batch_at(step), sampler.positives_at(step)
        anchors, positives = idx[:6], idx[6:]
        np.testing.assert_array_equal(pos, [6, 7, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1])
        ids = [next(i for i, m in members.items() if a in m) for a in anchors]
        assert len(set(ids[:3])) == 1 and len(set(ids[3:])) == 1 and ids[0] != ids[3]
        for a, p in zip(anchors, positives):
            cand, counts = matrix.row(int(a))
            assert p == rptm.select_positive(cand, counts, "mean") and p != a
    np.testing.assert_array_equal(sampler.batch_at(3), sampler.batch_at(3))   # seeded
