"""Offline hard mining (OHM) of triplets, the "OHM" row of Table 1 (Hermans et al. 2017).

Every ``every`` steps the trainer hands :meth:`OHMSampler.refresh` a function
that embeds records with the current model; the sampler embeds a random
subset of identities, keeps each anchor's hardest positive and hardest
negative (:func:`hard_triplets`), and draws its batches of consecutive
(a, p, n) triplets from them until the next refresh. The random-triplet
baseline and the N-tuplets are sampled inside the batch, in the graph
(:func:`kreid.training.terms.in_batch_triplets` / ``in_batch_tuplets``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from kreid.errors import SamplerError
from kreid_edge.distances import distance_matrix


def hard_triplets(embeddings: np.ndarray, labels) -> np.ndarray:
    """Hardest positive and negative (Euclidean) of every anchor that has both."""
    x = np.asarray(embeddings, np.float64)
    labels = np.asarray(labels)
    if np.isnan(x).any():
        raise ValueError("embeddings contain NaN: cannot mine triplets")
    d = distance_matrix(x, x, dtype=np.float64)
    same = labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    diff = labels[:, None] != labels[None]
    ok = same.any(1) & diff.any(1)
    pos = np.where(same, d, -np.inf).argmax(1)
    neg = np.where(diff, d, np.inf).argmin(1)
    anchors = np.flatnonzero(ok)
    return np.stack([anchors, pos[anchors], neg[anchors]], axis=1)


class RandomTripletSampler:
    """Batches of B random triplets from the whole training set, laid out [a1, p1, n1, ...]:
    the vanilla triplet baseline of Hermans et al. (Sec. 2: "once a certain set of B
    triplets has been chosen, their images are stacked into a batch of size 3B";
    B = 42 against PK = 32 x 4, footnote 2). Anchor identities are drawn uniformly
    among those with 2+ images, the positive among the anchor's other images,
    the negative uniformly among the other identities' images."""

    gives_positives = False
    refresh_every = 0

    def __init__(self, labels, num_triplets: int, seed: int = 0):
        labels = np.asarray(labels)
        self.num_triplets, self.seed = int(num_triplets), seed
        self.batch_size = 3 * self.num_triplets
        ids, inverse = np.unique(labels, return_inverse=True)
        self.members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
        self.usable = [i for i, m in enumerate(self.members) if len(m) >= 2]
        if self.num_triplets < 1 or not self.usable or len(ids) < 2:
            raise SamplerError("random triplets need an identity with 2+ images, another "
                               "identity and at least one triplet per batch")

    def batch_at(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step])
        out = np.empty((self.num_triplets, 3), np.int64)
        for t in range(self.num_triplets):
            c = self.usable[rng.integers(len(self.usable))]
            out[t, :2] = rng.choice(self.members[c], 2, replace=False)
            other = rng.integers(len(self.members) - 1)
            other += other >= c
            out[t, 2] = rng.choice(self.members[other])
        return out.reshape(-1)

    def positives_at(self, step: int) -> np.ndarray:
        return np.full(self.batch_size, -1, np.int64)

    def refresh(self, step, embed) -> None:
        pass


class OHMSampler:
    """Batches of mined triplets (a, p, n) laid out consecutively: [a1, p1, n1, a2, ...].

    Args:
      labels: training label of every record.
      num_triplets: triplets per batch (batch size = 3 x num_triplets).
      identities: identities embedded per refresh.
      every: refresh period in steps.
      seed: RNG seed; ``batch_at(step)`` draws with an RNG keyed by (seed, step).

    Batch ``step`` draws from the triplets mined for its period (``step //
    every``), or - for a batch the pipeline prefetches before that period is
    mined - from the latest set; the trainer restarts its input iterator after
    every mining, so such prefetched batches are never trained on. A resumed
    run mines its current period with the resumed model (the mined set is not
    part of the checkpoint).
    """

    gives_positives = False

    def __init__(self, labels, num_triplets: int, identities: int = 100, every: int = 500,
                 seed: int = 0):
        if num_triplets < 1:
            raise SamplerError("OHM needs at least one triplet per batch")
        self.labels = np.asarray(labels)
        self.num_triplets, self.identities, self.seed = num_triplets, identities, seed
        self.refresh_every = max(1, int(every))
        self.batch_size = 3 * num_triplets
        self.mined: dict[int, np.ndarray] = {}          # period -> triplets

    @property
    def triplets(self) -> np.ndarray | None:
        """The most recently mined triplets (None before the first mining)."""
        return self.mined[max(self.mined)] if self.mined else None

    def refresh(self, step: int, embed: Callable[[np.ndarray], np.ndarray]) -> None:
        """Mine the period of ``step``: embed a random subset of identities with the current
        model and keep their hard triplets."""
        rng = np.random.default_rng([self.seed, step, 7])
        ids = np.unique(self.labels)
        chosen = rng.choice(ids, min(self.identities, len(ids)), replace=False)
        subset = np.flatnonzero(np.isin(self.labels, chosen))
        self.update(subset[hard_triplets(embed(subset), self.labels[subset])],
                    step // self.refresh_every)

    def update(self, triplets: np.ndarray, period: int = 0) -> None:
        if len(triplets) == 0:
            raise SamplerError("offline hard mining found no triplet (need identities with 2+ "
                               "images in the mined subset)")
        mined = dict(self.mined)             # replaced whole: the pipeline thread reads it
        mined[period] = np.asarray(triplets, np.int64)
        self.mined = {p: t for p, t in mined.items() if p >= period - 1}

    def batch_at(self, step: int) -> np.ndarray:
        mined = self.mined
        if not mined:
            raise SamplerError("OHMSampler used before the first mining (call refresh)")
        triplets = mined.get(step // self.refresh_every, mined[max(mined)])
        rng = np.random.default_rng([self.seed, step])
        return triplets[rng.integers(len(triplets), size=self.num_triplets)].reshape(-1)

    def positives_at(self, step: int) -> np.ndarray:
        return np.full(self.batch_size, -1, np.int64)
