"""``joint``: train on several datasets at once, test on one (multi-dataset training).

Small ReID sets generalise better when trained together (Xiao et al.'s DGD,
"Learning Deep Feature Representations with Domain Guided Dropout", CVPR
2016, trained one network on CUHK03, CUHK01, PRID, VIPeR, 3DPeS, i-LIDS and
Shinpuhkan). ``joint`` loads the ``primary`` dataset at ``root`` (its training
split, query and gallery as usual, attributes kept) and adds **every** image
of each ``extra`` dataset (``"name:root"``, any registered loader) as further
training identities: their own train/query/gallery splits are all training
data here, since only the primary's test identities are scored.

* Identities and cameras of each extra dataset are renumbered after the
  previous ones, so that no two datasets share an identity or a camera. A
  dataset without cameras (training camids -1: i-LIDS, 3DPeS) stays at -1
  for all its images (its loader invents cameras 0/1 for its query and
  gallery only).
* Dropped from the extras: junk (pid < 0); the distractors of the
  Market-1501 layout family (pid 0 in ``market1501``, ``dukemtmc``,
  ``synthetic``, ``mars``; elsewhere 0 is a person, e.g. VIPeR's first);
  identities with fewer than ``min_images`` images (GRID's and PRID's
  single-camera people: a PK batch would only repeat their one image);
  attribute vectors and tracklet ids.
* An image is trained on once, and never if it is in the primary's query or
  gallery (an extra that is the primary itself is refused).

PK batches draw identities uniformly, so the primary's share of a batch is
its share of the identities.
"""

from __future__ import annotations

import collections
import dataclasses

from kreid.data.datasets import load, register
from kreid.data.records import ReidDataset, relabel

ZERO_IS_DISTRACTOR = ("market1501", "dukemtmc", "synthetic", "mars")


@register("joint")
def joint(root: str, primary: str = "cuhk03", extra=(), min_images: int = 2,
          **primary_options) -> ReidDataset:
    if isinstance(extra, str):
        extra = [extra]
    base = load(primary, root, **primary_options)
    test_paths = {r.path for r in base.query + base.gallery}
    train = list(base.train)
    seen = {r.path for r in train}
    next_pid = max(r.pid for r in train) + 1
    next_cam = max(r.camid for r in train) + 1
    added = {}
    for spec in extra:
        name, sep, extra_root = str(spec).partition(":")
        if not sep or not extra_root:
            raise ValueError(f"dataset.options.extra: {spec!r} is not 'name:root'")
        ds = load(name, extra_root)
        everything = ds.train + ds.query + ds.gallery
        leaked = [r.path for r in everything if r.path in test_paths]
        if leaked:
            raise ValueError(f"dataset.options.extra: {spec!r} holds {len(leaked)} images of "
                             f"the test split of {primary} ({leaked[0]})")
        lowest = 1 if name in ZERO_IS_DISTRACTOR else 0
        records = []
        for r in everything:
            if r.pid >= lowest and r.path not in seen:
                seen.add(r.path)
                records.append(r)
        count = collections.Counter(r.pid for r in records)
        records = [r for r in records if count[r.pid] >= min_images]
        cameraless = all(r.camid == -1 for r in ds.train)
        pids = {pid: next_pid + i for i, pid in enumerate(sorted({r.pid for r in records}))}
        cams = {} if cameraless else {
            cam: next_cam + i for i, cam in enumerate(sorted({r.camid for r in records}))}
        for r in records:
            train.append(dataclasses.replace(r, pid=pids[r.pid], camid=cams.get(r.camid, -1),
                                             label=-1, trackid=-1, attributes=None))
        next_pid += len(pids)
        next_cam += len(cams)
        counts = added.setdefault(name, {"identities": 0, "images": 0})
        counts["identities"] += len(pids)
        counts["images"] += len(records)
    ds = ReidDataset(f"joint({primary})", base.root, relabel(train), base.query, base.gallery,
                     attribute_names=base.attribute_names,
                     meta={**base.meta, "primary": primary, "extra": added})
    ds.check_nonempty()
    return ds
