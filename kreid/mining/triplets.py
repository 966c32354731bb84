"""Index samplers for the losses that take explicit tuples (NumPy, seeded).

* :func:`random_triplets` - uniformly random valid (a, p, n), the "random"
  baseline of Table 1 (Hermans et al. 2017).
* :func:`hard_triplets` - offline hard mining (OHM): given embeddings of a
  subset computed with the current model every N steps, each anchor's
  hardest positive and hardest negative.
* :func:`sample_tuplets` - N-tuplets (anchor, positive, N-1 negatives of
  distinct identities) for the N-tuplet loss of Zhang et al.
"""

from __future__ import annotations

import numpy as np

from kreid.errors import SamplerError


def _groups(labels):
    labels = np.asarray(labels)
    ids, inverse = np.unique(labels, return_inverse=True)
    return labels, ids, [np.flatnonzero(inverse == i) for i in range(len(ids))], inverse


def random_triplets(labels, num: int, rng: np.random.Generator) -> np.ndarray:
    labels, ids, members, inverse = _groups(labels)
    usable = [i for i, m in enumerate(members) if len(m) >= 2]
    if not usable or len(ids) < 2:
        raise SamplerError("random triplets need an identity with 2+ images and 2+ identities")
    out = np.empty((num, 3), np.int64)
    for t in range(num):
        c = usable[rng.integers(len(usable))]
        a, p = rng.choice(members[c], 2, replace=False)
        other = rng.integers(len(ids) - 1)
        other += other >= c
        out[t] = a, p, rng.choice(members[other])
    return out


def hard_triplets(embeddings: np.ndarray, labels) -> np.ndarray:
    """Hardest positive and negative (Euclidean) of every anchor that has both."""
    x = np.asarray(embeddings, np.float64)
    labels = np.asarray(labels)
    if np.isnan(x).any():
        raise ValueError("embeddings contain NaN: cannot mine triplets")
    sq = (x * x).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0))
    same = labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    diff = labels[:, None] != labels[None]
    ok = same.any(1) & diff.any(1)
    pos = np.where(same, d, -np.inf).argmax(1)
    neg = np.where(diff, d, np.inf).argmin(1)
    anchors = np.flatnonzero(ok)
    return np.stack([anchors, pos[anchors], neg[anchors]], axis=1)


def sample_tuplets(labels, n: int, num: int, rng: np.random.Generator) -> np.ndarray:
    """``num`` tuplets [anchor, positive, n-1 negatives] as an int array [num, n+1]."""
    labels, ids, members, _ = _groups(labels)
    if len(ids) < n:
        raise SamplerError(f"N={n} needs {n} identities in the batch, found {len(ids)}")
    usable = [i for i, m in enumerate(members) if len(m) >= 2]
    if not usable:
        raise SamplerError("N-tuplets need an identity with at least 2 images in the batch")
    out = np.empty((num, n + 1), np.int64)
    for t in range(num):
        c = usable[rng.integers(len(usable))]
        out[t, :2] = rng.choice(members[c], 2, replace=False)
        others = rng.choice([i for i in range(len(ids)) if i != c], n - 1, replace=False)
        out[t, 2:] = [rng.choice(members[o]) for o in others]
    return out


class OHMSampler:
    """Batches of mined triplets (a, p, n) laid out consecutively: [a1, p1, n1, a2, ...].

    The trainer calls :meth:`update` every N steps with triplets mined by
    :func:`hard_triplets` on embeddings of a subset computed with the current
    model (offline hard mining, OHM). ``batch_at(step)`` draws from the current
    triplets with an RNG keyed by (seed, step).
    """

    def __init__(self, num_triplets: int, seed: int = 0):
        if num_triplets < 1:
            raise SamplerError("OHM needs at least one triplet per batch")
        self.num_triplets, self.seed = num_triplets, seed
        self.batch_size = 3 * num_triplets
        self.triplets: np.ndarray | None = None

    def update(self, triplets: np.ndarray) -> None:
        if len(triplets) == 0:
            raise SamplerError("offline hard mining found no triplet (need identities with 2+ "
                               "images in the mined subset)")
        self.triplets = np.asarray(triplets, np.int64)

    def batch_at(self, step: int) -> np.ndarray:
        if self.triplets is None:
            raise SamplerError("OHMSampler used before the first mining")
        rng = np.random.default_rng([self.seed, step])
        return self.triplets[rng.integers(len(self.triplets), size=self.num_triplets)].reshape(-1)
