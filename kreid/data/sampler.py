"""PK batch sampling (Hermans et al. 2017, Sec. 3.5), pure NumPy and seeded.

A batch holds P identities drawn uniformly without replacement and K images
of each: without replacement when the identity has at least K images,
otherwise all its images and then repeats (``short='replicate'``, the
paper's choice), or refused (``short='error'``), or such identities are
never drawn (``short='skip'``).

Every batch sampler of kreid (this one, offline hard mining's
:class:`kreid.mining.triplets.OHMSampler`, RPTM's
:class:`kreid.mining.rptm.RPTMSampler`) follows :class:`BatchSampler`.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from kreid.errors import SamplerError

SHORT_POLICIES = ("replicate", "error", "skip")


class BatchSampler(Protocol):
    """What the training pipeline needs of a sampler.

    ``batch_at(step)`` is a pure function of the seed and the step (so a
    resumed run replays the same batches). ``gives_positives``: the sampler
    also chooses each anchor's positive, ``positives_at(step)`` gives its
    position in the batch (-1 for non-anchors). ``refresh_every`` > 0: the
    trainer calls ``refresh(step, embed)`` every that many steps with a
    function that embeds record indices with the current model (offline
    mining).
    """

    batch_size: int
    gives_positives: bool
    refresh_every: int

    def batch_at(self, step: int) -> np.ndarray: ...

    def positives_at(self, step: int) -> np.ndarray: ...

    def refresh(self, step: int, embed: Callable[[np.ndarray], np.ndarray]) -> None: ...


class PKSampler:
    """Infinite stream of PK index batches with a restorable RNG state.

    Args:
      pids: identity of each item (any integers).
      camids: optional camera of each item: the K images of an identity are then
        spread over its cameras (round-robin), so hard positives are cross-camera.
      p: identities per batch.
      k: images per identity.
      seed: RNG seed.
      short: what to do with identities that have fewer than K images.

    Example:
      >>> s = PKSampler([0, 0, 1, 1, 2, 2], p=2, k=2, seed=0)
      >>> len(next(iter(s)))
      4
    """

    gives_positives = False
    refresh_every = 0

    def __init__(self, pids: Sequence[int], p: int, k: int, seed: int = 0,
                 short: str = "replicate", camids: Sequence[int] | None = None):
        if p < 1 or k < 1:
            raise SamplerError(f"P and K must be positive, got P={p}, K={k}")
        if short not in SHORT_POLICIES:
            raise SamplerError(f"short must be one of {SHORT_POLICIES}, got {short!r}")
        pids = np.asarray(pids)
        ids, inverse, counts = np.unique(pids, return_inverse=True, return_counts=True)
        too_few = ids[counts < k]
        if short == "error" and len(too_few):
            raise SamplerError(
                f"K={k} but {len(too_few)} identities have fewer images (e.g. identity "
                f"{too_few[0]} has {counts[counts < k][0]}); lower K or use short='replicate'")
        keep = counts >= k if short == "skip" else np.ones(len(ids), bool)
        self._members = [np.flatnonzero(inverse == i) for i in np.flatnonzero(keep)]
        if len(self._members) < p:
            raise SamplerError(
                f"P={p} identities per batch but only {len(self._members)} are available"
                + (f" with at least K={k} images" if short == "skip" else ""))
        self.p, self.k, self.seed = p, k, seed
        self.step = 0
        self.camids = None if camids is None else np.asarray(camids)

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.next_batch()

    def next_batch(self) -> np.ndarray:
        batch = self.batch_at(self.step)
        self.step += 1
        return batch

    def batch_at(self, step: int) -> np.ndarray:
        """The batch of training step ``step``: a pure function of (seed, step),
        so a resumed run draws exactly the batches it would have drawn."""
        rng = np.random.default_rng([self.seed, step])
        chosen = rng.choice(len(self._members), self.p, replace=False)
        out = np.empty(self.p * self.k, np.int64)
        for i, c in enumerate(chosen):
            members = rng.permutation(self._members[c])
            if self.camids is not None:
                members = self._interleave_cameras(members, rng)
            if len(members) < self.k:
                members = np.resize(members, self.k)  # all images, then repeats
            out[i * self.k:(i + 1) * self.k] = members[:self.k]
        return out

    def _interleave_cameras(self, members: np.ndarray, rng) -> np.ndarray:
        """Order an identity's images round-robin over its cameras (cameras in random
        order), so the K drawn images span as many cameras as possible."""
        cams = self.camids[members]
        groups = [members[cams == c] for c in rng.permutation(np.unique(cams))]
        order = [g[j] for j in range(max(len(g) for g in groups)) for g in groups if j < len(g)]
        return np.array(order, np.int64)

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def positives_at(self, step: int) -> np.ndarray:
        return np.full(self.batch_size, -1, np.int64)

    def refresh(self, step, embed) -> None:
        pass

    @property
    def state(self) -> dict:
        """JSON-serialisable position of the stream, for resuming training."""
        return {"seed": self.seed, "step": self.step}

    @state.setter
    def state(self, value: dict) -> None:
        self.seed, self.step = int(value["seed"]), int(value["step"])


def pk_batches(pids: Sequence[int], p: int, k: int, seed: int = 0,
               short: str = "replicate", num_batches: int | None = None) -> Iterator[np.ndarray]:
    """Yield index arrays of length P*K (forever unless ``num_batches`` is given)."""
    sampler = PKSampler(pids, p, k, seed=seed, short=short)
    while num_batches is None or sampler.step < num_batches:
        yield sampler.next_batch()
