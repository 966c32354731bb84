"""The batch sampler of a run, by the name the run plan gives (``plan.sampler``).

PK batches (``pk``) by default; a loss term that needs other batches says so
(:attr:`kreid.training.terms.Term.sampler`) and :func:`kreid.training.plan.resolve`
puts that name in the plan: ``random_triplets`` (random triplets of the whole
training set, the vanilla triplet baseline), ``ohm`` (offline hard mining) or
``rptm`` (relation-preserving positives). Every sampler follows
:class:`kreid.data.sampler.BatchSampler`, so the pipeline and the trainer
treat them alike, and the batch size is the sampler's (3 x the number of
triplets for the triplet samplers). A new sampler is one function here and
one line of :data:`SAMPLERS`.
"""

from __future__ import annotations

import os
from typing import Callable

from kreid.data.records import Record
from kreid.data.sampler import BatchSampler, PKSampler


def _pk(plan, records: list[Record], workdir: str) -> BatchSampler:
    b = plan.batch
    return PKSampler([r.label for r in records], b.p, b.k, seed=plan.seed, short=b.short,
                     camids=[r.camid for r in records] if b.camera_balanced else None)


def _random_triplets(plan, records: list[Record], workdir: str) -> BatchSampler:
    from kreid.mining.triplets import RandomTripletSampler

    return RandomTripletSampler([r.label for r in records], (plan.batch.p * plan.batch.k) // 3,
                                seed=plan.seed)


def _ohm(plan, records: list[Record], workdir: str) -> BatchSampler:
    from kreid.mining.triplets import OHMSampler

    return OHMSampler([r.label for r in records], (plan.batch.p * plan.batch.k) // 3,
                      identities=plan.ohm.identities, every=plan.ohm.every, seed=plan.seed)


def _rptm(plan, records: list[Record], workdir: str) -> BatchSampler:
    from kreid.mining import rptm

    o = plan.rptm
    matrix = rptm.build_relational_matrix(
        [r.path for r in records], [r.label for r in records],
        o.cache_dir or os.path.join(workdir, "rptm_cache"), workers=o.workers,
        config=rptm.GMSConfig(with_rotation=o.with_rotation))
    return rptm.RPTMSampler(matrix, plan.batch.p, plan.batch.k, mode=o.mode, tau=o.tau,
                            seed=plan.seed, side=o.side, layout=o.layout)


SAMPLERS: dict[str, Callable[..., BatchSampler]] = {
    "pk": _pk, "random_triplets": _random_triplets, "ohm": _ohm, "rptm": _rptm}


def make_sampler(plan, records: list[Record], workdir: str) -> BatchSampler:
    """The sampler ``plan.sampler`` names, over the training ``records``."""
    if plan.sampler not in SAMPLERS:
        raise ValueError(f"unknown batch sampler {plan.sampler!r}; known: {', '.join(SAMPLERS)}")
    return SAMPLERS[plan.sampler](plan, records, workdir)
