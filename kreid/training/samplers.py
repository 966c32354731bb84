"""The batch sampler a run needs, decided once from the config and its loss terms.

PK batches by default; the vanilla triplet baseline (``triplet`` with
``mining: random``: random triplets of the whole training set), offline hard
mining (``mining: ohm``) and RPTM (``rptm``) bring their own samplers. Every sampler follows
:class:`kreid.data.sampler.BatchSampler`, so the pipeline and the trainer
treat them alike, and the batch size is the sampler's (3 x the number of
mined triplets for OHM).
"""

from __future__ import annotations

import os

from kreid.data.records import Record
from kreid.data.sampler import BatchSampler, PKSampler


def make_sampler(kinds: set[str], config, records: list[Record], workdir: str) -> BatchSampler:
    """The sampler for ``kinds`` (what the terms of all stages need: {}, {"ohm"}, {"rptm"})."""
    if len(kinds) > 1:
        raise ValueError(f"config.losses: the terms need different batch samplers "
                         f"{sorted(kinds)}; one run uses one sampler")
    c = config
    labels = [r.label for r in records]
    p, k, seed = int(c.batch.p), int(c.batch.k), int(c.seed)
    if "random_triplets" in kinds:
        from kreid.mining.triplets import RandomTripletSampler

        return RandomTripletSampler(labels, (p * k) // 3, seed=seed)
    if "ohm" in kinds:
        from kreid.mining.triplets import OHMSampler

        return OHMSampler(labels, (p * k) // 3, identities=int(c.ohm.identities),
                          every=int(c.ohm.get("every", 500)), seed=seed)
    if "rptm" in kinds:
        from kreid.mining import rptm

        o = dict(c.get("rptm", {}))
        gms = rptm.GMSConfig(with_rotation=bool(o.get("with_rotation", True)))
        matrix = rptm.build_relational_matrix(
            [r.path for r in records], labels,
            o.get("cache_dir") or os.path.join(workdir, "rptm_cache"),
            workers=int(o.get("workers", os.cpu_count() or 1)), config=gms)
        return rptm.RPTMSampler(matrix, p, k, mode=o.get("mode", "mean"),
                                tau=float(o.get("tau", 10.0)), seed=seed,
                                side=o.get("side", "above"))
    return PKSampler(labels, p, k, seed=seed, short=c.batch.get("short", "replicate"),
                     camids=[r.camid for r in records] if c.batch.get("camera_balanced")
                     else None)
