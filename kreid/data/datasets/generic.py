"""User datasets: CSV lists (the triplet-reid paper code's format) and identity folders.

Camera ids: the CSV's optional third column, else a Market-style ``_cN`` in
the file name, else (no cameras known) query images get camid 0 and gallery
images camid 1 so that same-camera exclusion removes nothing.
"""

from __future__ import annotations

import csv as csv_module
import os
import re

from kreid.data.datasets import register
from kreid.data.datasets._common import list_images, require_dir, require_file
from kreid.data.records import Record, ReidDataset, relabel
from kreid.errors import DatasetLayoutError

_MARKET_CAM = re.compile(r"_c(\d+)")


def _camid(name: str, default: int) -> int:
    m = _MARKET_CAM.search(os.path.basename(name))
    return int(m.group(1)) - 1 if m else default


def read_csv(path: str, image_root: str, default_camid: int = 0) -> list[Record]:
    """Lines ``pid,path[,camid]``; relative paths are joined to ``image_root``."""
    require_file(path, "CSV list of 'pid,path[,camid]' lines")
    out = []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv_module.reader(f), 1):
            if not row or row[0].startswith("#"):
                continue
            try:
                pid = int(row[0])
                rel = row[1].strip()
                camid = int(row[2]) if len(row) > 2 else _camid(rel, default_camid)
            except (ValueError, IndexError) as exc:
                raise DatasetLayoutError(
                    f"{path}:{lineno}: expected 'pid,path[,camid]', got {','.join(row)!r}"
                ) from exc
            out.append(Record(os.path.join(image_root, rel), pid, camid))
    return out


@register("csv")
def csv(root: str, train_csv: str = "train.csv", query_csv: str | None = "query.csv",
        gallery_csv: str | None = "gallery.csv") -> ReidDataset:
    """CSV files (relative to ``root`` unless absolute); image paths are relative to ``root``."""

    def read(name, default_cam):
        if name is None:
            return []
        return read_csv(os.path.join(root, name), root, default_cam)

    train = relabel(read(train_csv, 0))
    ds = ReidDataset("csv", root, train, read(query_csv, 0), read(gallery_csv, 1))
    ds.check_nonempty("train")
    return ds


def read_identity_folders(folder: str, default_camid: int = 0) -> list[Record]:
    """``folder/<identity>/*.jpg``; integer folder names are the pid, others are enumerated."""
    require_dir(folder, "one sub-folder per identity")
    subdirs = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    if not subdirs:
        raise DatasetLayoutError(f"{folder}: expected one sub-folder per identity, found none")
    out = []
    for i, sub in enumerate(subdirs):
        pid = int(sub) if sub.isdigit() else i
        for name in list_images(os.path.join(folder, sub)):
            out.append(Record(os.path.join(folder, sub, name), pid, _camid(name, default_camid)))
    return out


@register("folder")
def folder(root: str) -> ReidDataset:
    """``root/train/<id>/``, optional ``root/query/<id>/`` and ``root/gallery/<id>/``.

    Without a ``train/`` folder, ``root`` itself is read as the training set.
    """
    train_dir = os.path.join(root, "train")
    train_dir = train_dir if os.path.isdir(train_dir) else root
    query_dir, gallery_dir = os.path.join(root, "query"), os.path.join(root, "gallery")
    query = read_identity_folders(query_dir, 0) if os.path.isdir(query_dir) else []
    gallery = read_identity_folders(gallery_dir, 1) if os.path.isdir(gallery_dir) else []
    ds = ReidDataset("folder", root, relabel(read_identity_folders(train_dir)), query, gallery)
    ds.check_nonempty("train")
    return ds
