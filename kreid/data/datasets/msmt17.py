"""MSMT17 (V1/V2): ``train/``, ``test/`` and ``list_{train,val,query,gallery}.txt``.

Each list line is ``relative/path.jpg pid``; the camera is the third
``_``-separated field of the file name (1-based). Train merges list_train and
list_val (as torchreid does) unless ``use_val=False``.
"""

from __future__ import annotations

import os

from kreid.data.datasets import register
from kreid.data.datasets._common import find_root, require_dir, require_file
from kreid.data.records import Record, ReidDataset, relabel
from kreid.errors import DatasetLayoutError


def _read_list(list_path: str, image_dir: str) -> list[Record]:
    require_file(list_path, "MSMT17 image list")
    out = []
    with open(list_path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rel, pid = line.split()
                camid = int(os.path.basename(rel).split("_")[2]) - 1
                out.append(Record(os.path.join(image_dir, rel), int(pid), camid))
            except (ValueError, IndexError) as exc:
                raise DatasetLayoutError(
                    f"{list_path}:{lineno}: expected 'PPPP/PPPP_SSS_CC_....jpg pid', "
                    f"got {line.strip()!r}") from exc
    return out


@register("msmt17")
def msmt17(root: str, use_val: bool = True) -> ReidDataset:
    base = find_root(root, ("MSMT17_V1", "MSMT17_V2", "MSMT17", "msmt17"), "list_train.txt")
    train_dir = require_dir(os.path.join(base, "train"), "MSMT17 training images")
    test_dir = require_dir(os.path.join(base, "test"), "MSMT17 test images")
    train = _read_list(os.path.join(base, "list_train.txt"), train_dir)
    if use_val:
        train += _read_list(os.path.join(base, "list_val.txt"), train_dir)
    ds = ReidDataset("msmt17", base, relabel(train),
                     _read_list(os.path.join(base, "list_query.txt"), test_dir),
                     _read_list(os.path.join(base, "list_gallery.txt"), test_dir))
    ds.check_nonempty()
    return ds
