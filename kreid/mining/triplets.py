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


class OHMSampler:
    """Batches of mined triplets (a, p, n) laid out consecutively: [a1, p1, n1, a2, ...].

    Args:
      labels: training label of every record.
      num_triplets: triplets per batch (batch size = 3 x num_triplets).
      identities: identities embedded per refresh.
      every: refresh period in steps.
      seed: RNG seed; ``batch_at(step)`` draws with an RNG keyed by (seed, step).
    """

    gives_positives = False

    def __init__(self, labels, num_triplets: int, identities: int = 100, every: int = 500,
                 seed: int = 0):
        if num_triplets < 1:
            raise SamplerError("OHM needs at least one triplet per batch")
        self.labels = np.asarray(labels)
        self.num_triplets, self.identities, self.seed = num_triplets, identities, seed
        self.refresh_every = int(every)
        self.batch_size = 3 * num_triplets
        self.triplets: np.ndarray | None = None

    def refresh(self, step: int, embed: Callable[[np.ndarray], np.ndarray]) -> None:
        """Mine anew: embed a random subset of identities and keep their hard triplets."""
        rng = np.random.default_rng([self.seed, step, 7])
        ids = np.unique(self.labels)
        chosen = rng.choice(ids, min(self.identities, len(ids)), replace=False)
        subset = np.flatnonzero(np.isin(self.labels, chosen))
        self.update(subset[hard_triplets(embed(subset), self.labels[subset])])

    def update(self, triplets: np.ndarray) -> None:
        if len(triplets) == 0:
            raise SamplerError("offline hard mining found no triplet (need identities with 2+ "
                               "images in the mined subset)")
        self.triplets = np.asarray(triplets, np.int64)

    def batch_at(self, step: int) -> np.ndarray:
        if self.triplets is None:
            raise SamplerError("OHMSampler used before the first mining (call refresh)")
        rng = np.random.default_rng([self.seed, step])
        return self.triplets[rng.integers(len(self.triplets), size=self.num_triplets)].reshape(-1)

    def positives_at(self, step: int) -> np.ndarray:
        return np.full(self.batch_size, -1, np.int64)
