"""Offline hard mining: hardest triplets and the OHM sampler's refresh/batches."""

import numpy as np
import pytest

from kreid.errors import SamplerError
from kreid.mining import triplets as miners


def test_hard_triplets_pick_hardest():
    x = np.array([[0.0], [1.0], [3.0], [5.0], [9.0]])
    y = np.array([0, 0, 1, 1, 2])
    t = miners.hard_triplets(x, y)
    # anchor: (hardest positive, hardest negative); identity 2 has no positive
    assert {a: (p, n) for a, p, n in t.tolist()} == {0: (1, 2), 1: (0, 2), 2: (3, 1),
                                                     3: (2, 1)}
    with pytest.raises(ValueError, match="NaN"):
        miners.hard_triplets(np.full((3, 2), np.nan), [0, 0, 1])


def test_ohm_sampler_refreshes_from_the_current_embeddings():
    labels = np.repeat(np.arange(5), 3)                      # 5 identities x 3 images
    s = miners.OHMSampler(labels, num_triplets=4, identities=3, every=10, seed=0)
    assert s.batch_size == 12 and s.refresh_every == 10 and not s.gives_positives
    with pytest.raises(SamplerError, match="before the first mining"):
        s.batch_at(0)
    seen = []

    def embed(indices):                                      # a fake model: 1-d positions
        seen.append(indices)
        return indices[:, None].astype(np.float32)

    s.refresh(0, embed)
    mined = set(np.unique(labels[seen[0]]).tolist())
    assert len(mined) == 3                                    # 3 identities embedded
    batch = s.batch_at(5)
    assert batch.shape == (12,) and np.array_equal(batch, s.batch_at(5))
    a, p, n = batch.reshape(-1, 3).T
    assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
    assert set(labels[a].tolist()) <= mined
    assert (s.positives_at(5) == -1).all()


def test_ohm_sampler_without_any_triplet_is_refused():
    s = miners.OHMSampler(np.arange(4), num_triplets=1)      # no identity has 2 images
    with pytest.raises(SamplerError, match="no triplet"):
        s.refresh(0, lambda idx: idx[:, None].astype(np.float32))
