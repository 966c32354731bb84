"""PK sampling (Hermans et al. 2017, Sec. 3.5)."""

import collections

import numpy as np
import pytest

from kreid.data.sampler import PKSampler, pk_batches
from kreid.errors import SamplerError


def _pids():
    # identity 7 has 2 images, the others 6
    return np.array([0] * 6 + [1] * 6 + [2] * 6 + [7] * 2 + [9] * 6)


def test_batch_structure_and_no_replacement():
    pids = _pids()
    for batch in pk_batches(pids, p=3, k=4, seed=1, num_batches=50):
        assert batch.shape == (12,)
        groups = pids[batch].reshape(3, 4)
        assert (groups == groups[:, :1]).all()             # K images of one identity per row
        assert len(set(groups[:, 0])) == 3                  # P distinct identities
        for row, pid in zip(batch.reshape(3, 4), groups[:, 0]):
            if pid != 7:
                assert len(set(row)) == 4                   # without replacement


def test_short_identity_is_replicated_using_all_images():
    pids = _pids()
    seen = 0
    for batch in pk_batches(pids, p=5, k=4, seed=0, num_batches=5):
        rows = batch.reshape(5, 4)
        for row in rows:
            if pids[row[0]] == 7:
                assert set(row) == {18, 19}                 # both images, then repeats
                assert sorted(collections.Counter(row).values()) == [2, 2]
                seen += 1
    assert seen == 5


def test_identities_uniform():
    pids = np.repeat(np.arange(10), 3)
    counts = collections.Counter()
    for batch in pk_batches(pids, p=2, k=3, seed=0, num_batches=3000):
        counts.update(pids[batch[::3]].tolist())
    freq = np.array([counts[i] for i in range(10)]) / 6000
    assert np.allclose(freq, 0.1, atol=0.015)


def test_seeded_and_resumable():
    a = list(pk_batches(_pids(), 2, 2, seed=3, num_batches=6))
    b = list(pk_batches(_pids(), 2, 2, seed=3, num_batches=6))
    assert all((x == y).all() for x, y in zip(a, b))
    c = list(pk_batches(_pids(), 2, 2, seed=4, num_batches=6))
    assert any((x != y).any() for x, y in zip(a, c))
    s = PKSampler(_pids(), 2, 2, seed=3)
    s.state = {"seed": 3, "step": 4}
    assert (s.next_batch() == a[4]).all() and s.state["step"] == 5


def test_errors_are_clear():
    with pytest.raises(SamplerError, match="only 5 are available"):
        PKSampler(_pids(), p=6, k=2)
    with pytest.raises(SamplerError, match="identity 7 has 2"):
        PKSampler(_pids(), p=2, k=4, short="error")
    with pytest.raises(SamplerError, match="at least K=4"):
        PKSampler(_pids(), p=5, k=4, short="skip")
    s = PKSampler(_pids(), p=4, k=4, short="skip")
    assert 7 not in set(_pids()[s.next_batch()])
    with pytest.raises(SamplerError, match="positive"):
        PKSampler(_pids(), p=0, k=4)


def test_camera_balanced_batches_span_cameras():
    pids = np.repeat([0, 1, 2], 6)
    cams = np.tile([0, 0, 0, 0, 1, 1], 3)            # 4 images in camera 0, 2 in camera 1
    s = PKSampler(pids, p=3, k=4, seed=0, camids=cams)
    for step in range(20):
        rows = s.batch_at(step).reshape(3, 4)
        for row in rows:
            assert sorted(cams[row].tolist()) == [0, 0, 1, 1]   # 2 per camera, not 4 + 0
            assert len(set(row)) == 4
