"""Triplet and tuplet index samplers (random, offline hard mining, N-tuplets)."""

import numpy as np
import pytest

from kreid.errors import SamplerError
from kreid.mining import triplets as miners


def test_random_triplets_are_valid():
    y = np.array([0, 0, 1, 1, 1, 2])
    t = miners.random_triplets(y, 200, np.random.default_rng(0))
    assert (y[t[:, 0]] == y[t[:, 1]]).all() and (t[:, 0] != t[:, 1]).all()
    assert (y[t[:, 0]] != y[t[:, 2]]).all()
    assert set(y[t[:, 2]]) == {0, 1, 2}
    with pytest.raises(SamplerError):
        miners.random_triplets(np.arange(4), 3, np.random.default_rng(0))


def test_hard_triplets_pick_hardest():
    x = np.array([[0.0], [1.0], [3.0], [5.0], [9.0]])
    y = np.array([0, 0, 1, 1, 2])
    t = miners.hard_triplets(x, y)
    # anchor: (hardest positive, hardest negative); identity 2 has no positive
    assert {a: (p, n) for a, p, n in t.tolist()} == {0: (1, 2), 1: (0, 2), 2: (3, 1),
                                                     3: (2, 1)}
    with pytest.raises(ValueError, match="NaN"):
        miners.hard_triplets(np.full((3, 2), np.nan), [0, 0, 1])


def test_tuplets_need_enough_identities():
    with pytest.raises(SamplerError, match="N=5"):
        miners.sample_tuplets(np.repeat(np.arange(3), 2), 5, 2, np.random.default_rng(0))
