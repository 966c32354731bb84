"""Small classic benchmarks in PETA's layout (VIPeR, PRID, GRID, iLIDS, 3DPeS) and CUHK01.

Each PETA subset folder holds its images and ``Label.txt`` (attributes per
identity, see :mod:`attributes`). Train/test identity splits are seeded
(``seed``, ``num_test_ids``). Protocols, single shot:

* VIPeR: query = camera A image of each test identity, gallery = camera B.
* PRID: the 200 identities seen by both cameras are split; query = camera A of
  the test identities, gallery = their camera B images plus every identity
  seen only by camera B (distractors). Camera-A-only identities are unused.
* GRID: the 250 paired identities are split; query = the first (file-name
  order) image of each test identity, gallery = its second image plus the 775
  single-image distractors. Cameras come from the file name.
* iLIDS, 3DPeS (no camera field): identities with 2+ images are split; per
  test identity one seeded random image is the query (camid 0) and the rest
  form the gallery (camid 1); single-image identities join the training set.
* CUHK01 (``campus/PPPPIII.png``, images 1-2 camera A, 3-4 camera B): query =
  camera A images of test identities, gallery = camera B images.
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np

from kreid.data.datasets import register
from kreid.data.datasets._common import (list_images, parse, require_dir,
                                         split_identities)
from kreid.data.datasets.attributes import load_peta_labels
from kreid.data.records import Record, ReidDataset, attach_attributes, relabel
from kreid.errors import DatasetLayoutError

_VIPER = re.compile(r"^(\d+)_(\d+)_([12])\.\w+$")
_PRID = re.compile(r"^(\d+)_([ab])\.\w+$")
_GRID = re.compile(r"^(\d+)_(\d+)_")
_PREFIX = re.compile(r"^(\d+)_")
_CUHK01 = re.compile(r"^(\d{4})(\d{3})\.\w+$")


def _records(folder: str, pattern: re.Pattern, expected: str, camera) -> list[Record]:
    require_dir(folder, "image folder")
    names = list_images(folder)
    if not names:
        raise DatasetLayoutError(f"{folder}: no images in the folder; expected files named "
                                 f"{expected}")
    out = []
    for name in names:
        groups = parse(pattern, name, folder, expected)
        out.append(Record(os.path.join(folder, name), int(groups[0]), camera(groups)))
    return out


def _finish(name: str, folder: str, train, query, gallery, attributes: bool,
            meta: dict) -> ReidDataset:
    names: tuple[str, ...] = ()
    label_path = os.path.join(folder, "Label.txt")
    train = relabel(train)
    if attributes and os.path.isfile(label_path):
        names, table = load_peta_labels(label_path)
        train, query, gallery = (attach_attributes(s, table) for s in (train, query, gallery))
    ds = ReidDataset(name, folder, train, query, gallery, attribute_names=names, meta=meta)
    ds.check_nonempty()
    return ds


def _by_pid(records):
    groups = collections.defaultdict(list)
    for r in records:
        groups[r.pid].append(r)
    return groups


def _paired_split(name, folder, records, paired_pids, num_test_ids, seed, attributes,
                  query_of, extra_gallery=()):
    num_test_ids = num_test_ids or len(paired_pids) // 2
    train_ids, test_ids = split_identities(paired_pids, num_test_ids, seed)
    groups = _by_pid(records)
    train = [r for pid in sorted(train_ids) for r in groups[pid]]
    query, gallery = [], []
    for pid in sorted(test_ids):
        q = query_of(groups[pid])
        query += q
        gallery += [r for r in groups[pid] if r not in q]
    gallery += list(extra_gallery)
    return _finish(name, folder, train, query, gallery, attributes,
                   {"seed": seed, "num_test_ids": num_test_ids})


@register("viper")
def viper(root: str, seed: int = 0, num_test_ids: int | None = None,
          attributes: bool = True) -> ReidDataset:
    folder = _subset(root, "VIPeR")
    recs = _records(folder, _VIPER, "'PPP_ANGLE_C.png' with C = 1 or 2",
                    lambda g: int(g[2]) - 1)
    pids = {r.pid for r in recs}
    return _paired_split("viper", folder, recs, pids, num_test_ids, seed, attributes,
                         lambda rs: [r for r in rs if r.camid == 0])


@register("prid")
def prid(root: str, seed: int = 0, num_test_ids: int | None = None,
         attributes: bool = True) -> ReidDataset:
    folder = _subset(root, "PRID")
    recs = _records(folder, _PRID, "'PPPP_a.png' or 'PPPP_b.png'",
                    lambda g: 0 if g[1] == "a" else 1)
    cams = collections.defaultdict(set)
    for r in recs:
        cams[r.pid].add(r.camid)
    paired = {p for p, c in cams.items() if c == {0, 1}}
    b_only = [r for r in recs if cams[r.pid] == {1}]
    return _paired_split("prid", folder, [r for r in recs if r.pid in paired], paired,
                         num_test_ids, seed, attributes,
                         lambda rs: [r for r in rs if r.camid == 0], b_only)


@register("grid")
def grid(root: str, seed: int = 0, num_test_ids: int | None = None,
         attributes: bool = True) -> ReidDataset:
    folder = _subset(root, "GRID")
    recs = _records(folder, _GRID, "'PID_CAM_FRAME_BOX.jpeg'", lambda g: int(g[1]) - 1)
    groups = _by_pid(recs)
    paired = {p for p, rs in groups.items() if len(rs) >= 2}
    singles = [r for p, rs in groups.items() if len(rs) < 2 for r in rs]
    return _paired_split("grid", folder, [r for r in recs if r.pid in paired], paired,
                         num_test_ids, seed, attributes, lambda rs: rs[:1], singles)


def _no_camera_split(name, folder, seed, num_test_ids, attributes):
    recs = _records(folder, _PREFIX, "'PID_...' (identity before the first '_')",
                    lambda g: -1)
    groups = _by_pid(recs)
    multi = {p for p, rs in groups.items() if len(rs) >= 2}
    num_test_ids = num_test_ids or len(multi) // 2
    train_ids, test_ids = split_identities(multi, num_test_ids, seed)
    rng = np.random.default_rng(seed + 1)
    train = [r for p, rs in groups.items() if p in train_ids or p not in multi for r in rs]
    query, gallery = [], []
    for pid in sorted(test_ids):
        rs = groups[pid]
        qi = int(rng.integers(len(rs)))
        query.append(Record(rs[qi].path, pid, 0))
        gallery += [Record(r.path, pid, 1) for i, r in enumerate(rs) if i != qi]
    return _finish(name, folder, train, query, gallery, attributes,
                   {"seed": seed, "num_test_ids": num_test_ids})


@register("ilids")
def ilids(root: str, seed: int = 0, num_test_ids: int | None = None,
          attributes: bool = True) -> ReidDataset:
    return _no_camera_split("ilids", _subset(root, "iLIDS"), seed, num_test_ids, attributes)


@register("3dpes")
def threedpes(root: str, seed: int = 0, num_test_ids: int | None = None,
              attributes: bool = True) -> ReidDataset:
    return _no_camera_split("3dpes", _subset(root, "3DPeS"), seed, num_test_ids, attributes)


@register("cuhk01")
def cuhk01(root: str, seed: int = 0, num_test_ids: int | None = None,
           attributes: bool = True) -> ReidDataset:
    campus = os.path.join(root, "campus")
    folder = campus if os.path.isdir(campus) else root
    recs = _records(folder, _CUHK01, "'PPPPIII.png' (4-digit identity, 3-digit image)",
                    lambda g: 0 if int(g[1]) <= 2 else 1)
    pids = {r.pid for r in recs}
    return _paired_split("cuhk01", folder, recs, pids, num_test_ids, seed, attributes,
                         lambda rs: [r for r in rs if r.camid == 0])


def _subset(root: str, subset: str) -> str:
    """Accept the subset folder itself or PETA's root holding it."""
    candidate = os.path.join(root, subset)
    return candidate if os.path.isdir(candidate) else require_dir(root, f"PETA {subset} subset")
