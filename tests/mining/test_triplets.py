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


def test_random_triplets_stack_b_triplets_from_the_whole_set():
    """Hermans et al. Sec. 2: B random triplets stacked into a batch of 3B (B = 42)."""
    labels = np.repeat(np.arange(40), 3)
    labels[-1] = 99                                          # an identity with one image
    s = miners.RandomTripletSampler(labels, num_triplets=42, seed=3)
    batch = s.batch_at(7)
    assert s.batch_size == 126 and batch.shape == (126,) and np.array_equal(batch, s.batch_at(7))
    a, p, n = batch.reshape(-1, 3).T
    assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all()
    assert (labels[a] != 99).all()                           # needs a second image
    drawn = {int(labels[i]) for st in range(30) for i in s.batch_at(st)[::3]}
    assert len(drawn) > 32                                   # from the whole set, not 32 ids
    with pytest.raises(SamplerError):
        miners.RandomTripletSampler(np.arange(5), 4)


def test_triplet_term_picks_its_sampler():
    from kreid.training.terms import parse_losses

    kinds = [parse_losses({"triplet": {"mining": m}})[0].sampler
             for m in ("random", "ohm", "in_batch")]
    assert kinds == ["random_triplets", "ohm", None]
    assert parse_losses({"lifted": {"pairs": "triplets"}})[0].sampler == "random_triplets"


def test_ohm_batches_use_their_periods_triplets():
    """Batch t draws from the triplets of period t // every once that period is mined."""
    labels = np.repeat(np.arange(6), 2)
    s = miners.OHMSampler(labels, num_triplets=2, identities=6, every=10, seed=0)
    s.update(np.array([[0, 1, 2]]), period=0)
    assert set(s.batch_at(9).tolist()) == {0, 1, 2}
    assert set(s.batch_at(10).tolist()) == {0, 1, 2}        # prefetched early: latest set
    s.update(np.array([[4, 5, 6]]), period=1)
    assert set(s.batch_at(10).tolist()) == {4, 5, 6}
    assert set(s.batch_at(9).tolist()) == {0, 1, 2}         # period 0 kept while current
    s.update(np.array([[7, 8, 9]]), period=2)
    assert 0 not in s.mined and set(s.mined) == {1, 2}
