"""CUHK03, in two layouts.

1. **Folder layout** (``../shared/data/cuhk03_labeled``): ``train/`` and
   ``val/`` with ``IIII_NN.jpg`` (identity numbered independently per folder;
   ``NN`` 00-04 first camera, 05-09 second). ``val`` is the test split: per
   identity and camera the lowest-numbered image is a query (200 queries for
   100 identities), every other image is gallery (738).
2. **Official release**: ``cuhk-03.mat`` (MATLAB v7.3/HDF5, cells of images
   per camera pair) plus the new-protocol split
   ``cuhk03_new_protocol_config_{labeled,detected}.mat`` (Zhong et al. 2017:
   767 train / 700 test identities). Images are extracted once to
   ``images_{labeled,detected}/`` named ``C_PPP_V_II.png`` (pair, identity,
   view, image; as torchreid names them), which the split's ``filelist`` uses.

``load("cuhk03", root)`` picks the layout from what ``root`` contains.
"""

from __future__ import annotations

import os
import re

import numpy as np

from kreid.data.datasets import register
from kreid.data.datasets._common import list_images, parse, require_dir, require_file
from kreid.data.records import Record, ReidDataset, relabel
from kreid.errors import DatasetLayoutError

_FOLDER_NAME = re.compile(r"^(\d+)_(\d+)\.\w+$")


def _folder_records(folder: str) -> list[Record]:
    require_dir(folder, "CUHK03 folder layout split")
    out = []
    for name in list_images(folder):
        pid, idx = (int(g) for g in parse(_FOLDER_NAME, name, folder, "'IIII_NN.jpg'"))
        out.append(Record(os.path.join(folder, name), pid, 0 if idx < 5 else 1))
    return out


def query_gallery_split(records) -> tuple[list[Record], list[Record]]:
    """The folder layout's protocol: per identity and camera the lowest-numbered
    image is a query, every other image is in the gallery."""
    query, gallery, seen = [], [], set()
    for r in sorted(records, key=lambda r: r.path):   # IIII_NN: lowest index first
        key = (r.pid, r.camid)
        (gallery if key in seen else query).append(r)
        seen.add(key)
    return query, gallery


def _load_folder_layout(root: str) -> ReidDataset:
    train = relabel(_folder_records(os.path.join(root, "train")))
    query, gallery = query_gallery_split(_folder_records(os.path.join(root, "val")))
    ds = ReidDataset("cuhk03", root, train, query, gallery, meta={"layout": "folder"})
    ds.check_nonempty()
    return ds


def _read_cells(mat_path: str, image_type: str):
    """Yield (pair, pid, image_index, HxWx3 uint8 RGB or None) from cuhk-03.mat."""
    import h5py

    with h5py.File(mat_path, "r") as mat:
        if image_type not in mat:
            raise DatasetLayoutError(f"{mat_path}: no {image_type!r} cell array")
        for pair, pair_ref in enumerate(mat[image_type][0]):
            cells = mat[pair_ref][:].T  # (num_pids, 10) object references
            for pid in range(cells.shape[0]):
                for idx, ref in enumerate(cells[pid]):
                    img = mat[ref][:].T
                    yield pair, pid, idx, (img if img.ndim == 3 and img.size else None)


def extract_images(mat_path: str, out_dir: str, image_type: str = "labeled") -> str:
    """Write every image of ``cuhk-03.mat`` to ``out_dir`` once (a marker file records completion)."""
    import cv2

    marker = os.path.join(out_dir, ".complete")
    if os.path.exists(marker):
        return out_dir
    os.makedirs(out_dir, exist_ok=True)
    for pair, pid, idx, img in _read_cells(mat_path, image_type):
        if img is None:
            continue
        name = f"{pair + 1:d}_{pid + 1:03d}_{1 if idx < 5 else 2:d}_{idx + 1:02d}.png"
        cv2.imwrite(os.path.join(out_dir, name), np.ascontiguousarray(img[..., ::-1]))
    open(marker, "w").close()
    return out_dir


def _load_official(root: str, image_type: str, cache_dir: str | None) -> ReidDataset:
    import scipy.io

    mat_path = require_file(os.path.join(root, "cuhk-03.mat"), "official CUHK03 release")
    split_path = require_file(
        os.path.join(root, f"cuhk03_new_protocol_config_{image_type}.mat"),
        "new-protocol split of Zhong et al. 2017")
    img_dir = extract_images(mat_path, os.path.join(cache_dir or root, f"images_{image_type}"),
                             image_type)
    split = scipy.io.loadmat(split_path)
    missing = [k for k in ("train_idx", "query_idx", "gallery_idx", "labels", "filelist",
                           "camId") if k not in split]
    if missing:
        raise DatasetLayoutError(f"{split_path}: missing variables {missing}")
    pids = split["labels"].flatten()
    cams = split["camId"].flatten()
    files = [np.asarray(f).flatten()[0] for f in split["filelist"].flatten()]

    def records(key):
        out = []
        for i in split[key].flatten() - 1:
            path = os.path.join(img_dir, str(files[i]))
            out.append(Record(path, int(pids[i]), int(cams[i]) - 1))
        return out

    ds = ReidDataset("cuhk03", root, relabel(records("train_idx")), records("query_idx"),
                     records("gallery_idx"), meta={"layout": "official", "type": image_type})
    ds.check_nonempty()
    return ds


@register("cuhk03")
def cuhk03(root: str, image_type: str = "labeled", cache_dir: str | None = None) -> ReidDataset:
    """CUHK03 from the folder layout (train/, val/) or the official .mat release."""
    if image_type not in ("labeled", "detected"):
        raise ValueError(f"image_type must be 'labeled' or 'detected', got {image_type!r}")
    if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "val")):
        return _load_folder_layout(root)
    if os.path.isfile(os.path.join(root, "cuhk-03.mat")):
        return _load_official(root, image_type, cache_dir)
    raise DatasetLayoutError(
        f"{root}: expected either train/ and val/ folders (folder layout) or cuhk-03.mat "
        "with cuhk03_new_protocol_config_*.mat (official release)")
