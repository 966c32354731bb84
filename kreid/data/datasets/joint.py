"""``joint``: train on several datasets at once, test on one (multi-dataset training).

Small ReID sets generalise better when trained together (Xiao et al.'s DGD,
"Learning Deep Feature Representations with Domain Guided Dropout", CVPR
2016, trained one network on CUHK03, CUHK01, PRID, VIPeR, 3DPeS, i-LIDS and
Shinpuhkan). ``joint`` loads the ``primary`` dataset at ``root`` (its training
split, query and gallery as usual) and adds **every** image of each ``extra``
dataset (``"name:root"``, any registered loader) as further training
identities: their own train/query/gallery splits are all training data here,
since only the primary's test identities are scored. Identities and cameras
of each extra dataset are renumbered after the previous ones, so that no two
datasets share an identity or a camera; distractors and junk (pid <= 0),
identities with fewer than ``min_images`` images (GRID's and PRID's
single-camera people: a PK batch would only repeat their one image),
attribute vectors and tracklet ids of the extras are dropped.
"""

from __future__ import annotations

import collections
import dataclasses

from kreid.data.datasets import load, register
from kreid.data.records import ReidDataset, relabel


@register("joint")
def joint(root: str, primary: str = "cuhk03", extra=(), min_images: int = 2,
          **primary_options) -> ReidDataset:
    if isinstance(extra, str):
        extra = [extra]
    base = load(primary, root, **primary_options)
    train = list(base.train)
    next_pid = max(r.pid for r in train) + 1
    next_cam = max(r.camid for r in train) + 1
    added = {}
    for spec in extra:
        name, sep, extra_root = str(spec).partition(":")
        if not sep or not extra_root:
            raise ValueError(f"dataset.options.extra: {spec!r} is not 'name:root'")
        ds = load(name, extra_root)
        records, paths = [], set()
        for r in ds.train + ds.query + ds.gallery:
            if r.pid > 0 and r.path not in paths:     # a loader may list an image twice
                paths.add(r.path)
                records.append(r)
        count = collections.Counter(r.pid for r in records)
        records = [r for r in records if count[r.pid] >= min_images]
        pids = {pid: next_pid + i for i, pid in enumerate(sorted({r.pid for r in records}))}
        cams = {cam: next_cam + i for i, cam in enumerate(sorted({r.camid for r in records}))}
        for r in records:
            train.append(dataclasses.replace(r, pid=pids[r.pid], camid=cams[r.camid],
                                             label=-1, trackid=-1, attributes=None))
        next_pid += len(pids)
        next_cam += len(cams)
        added[name] = {"identities": len(pids), "images": len(records)}
    train = [dataclasses.replace(r, attributes=None) for r in relabel(train)]
    ds = ReidDataset(f"joint({primary})", base.root, train, base.query, base.gallery,
                     meta={**base.meta, "primary": primary, "extra": added})
    ds.check_nonempty()
    return ds
