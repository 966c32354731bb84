"""Vehicle ReID: VeRi-776 and VehicleID.

* VeRi-776: ``image_{train,query,test}/`` with ``VVVV_cCCC_FFFFFFFF_0.jpg``;
  the ``name_{train,query,test}.txt`` lists are used when present.
* VehicleID: ``image/NNNNNNN.jpg`` and ``train_test_split/train_list.txt`` /
  ``test_list_{800,1600,2400}.txt`` (``image_id vehicle_id`` per line). Test
  protocol as fast-reid: per test vehicle one seeded random image is the
  gallery (camid 1), the others are queries (camid 0).
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np

from kreid.data.datasets import register
from kreid.data.datasets._common import find_root, list_images, parse, require_dir, require_file
from kreid.data.records import Record, ReidDataset, relabel
from kreid.errors import DatasetLayoutError

_VERI = re.compile(r"^(-?\d+)_c(\d+)")
VEHICLEID_TEST_SIZES = {"small": 800, "medium": 1600, "large": 2400}


def _veri_split(base: str, split: str) -> list[Record]:
    folder = require_dir(os.path.join(base, f"image_{split}"), f"VeRi-776 {split} images")
    list_path = os.path.join(base, f"name_{split}.txt")
    if os.path.isfile(list_path):
        with open(list_path) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        names = list_images(folder)
    out = []
    for name in names:
        vid, cam = (int(g) for g in parse(_VERI, name, list_path, "'VVVV_cCCC_....jpg'"))
        if vid != -1:
            out.append(Record(os.path.join(folder, name), vid, cam - 1))
    return out


@register("veri776")
def veri776(root: str) -> ReidDataset:
    base = find_root(root, ("VeRi", "veri", "VeRi-776"), "image_train")
    ds = ReidDataset("veri776", base, relabel(_veri_split(base, "train")),
                     _veri_split(base, "query"), _veri_split(base, "test"))
    ds.check_nonempty()
    return ds


def _vehicleid_list(path: str, image_dir: str) -> list[Record]:
    require_file(path, "VehicleID split list")
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise DatasetLayoutError(
                    f"{path}:{lineno}: expected 'image_id vehicle_id', got {line.strip()!r}")
            out.append(Record(os.path.join(image_dir, parts[0] + ".jpg"), int(parts[1]), 0))
    return out


@register("vehicleid")
def vehicleid(root: str, test_size: str = "small", seed: int = 0) -> ReidDataset:
    if test_size not in VEHICLEID_TEST_SIZES:
        raise ValueError(f"test_size must be one of {sorted(VEHICLEID_TEST_SIZES)}, "
                         f"got {test_size!r}")
    base = find_root(root, ("VehicleID_V1.0", "VehicleID", "vehicleid"), "train_test_split")
    image_dir = require_dir(os.path.join(base, "image"), "VehicleID images")
    split_dir = os.path.join(base, "train_test_split")
    train = _vehicleid_list(os.path.join(split_dir, "train_list.txt"), image_dir)
    test = _vehicleid_list(
        os.path.join(split_dir, f"test_list_{VEHICLEID_TEST_SIZES[test_size]}.txt"), image_dir)
    groups = collections.defaultdict(list)
    for r in test:
        groups[r.pid].append(r)
    rng = np.random.default_rng(seed)
    query, gallery = [], []
    for vid in sorted(groups):
        rs = groups[vid]
        g = int(rng.integers(len(rs)))
        gallery.append(Record(rs[g].path, vid, 1))
        query += [r for i, r in enumerate(rs) if i != g]
    ds = ReidDataset("vehicleid", base, relabel(train), query, gallery,
                     meta={"test_size": test_size, "seed": seed})
    ds.check_nonempty()
    return ds
