"""MARS video ReID: ``bbox_train/PPPP/*.jpg``, ``bbox_test/PPPP/*.jpg`` and ``info/``.

``info/`` holds ``train_name.txt``/``test_name.txt`` (frame names) and
``tracks_{train,test}_info.mat`` (rows ``start end pid cam``, 1-based into the
name lists) and ``query_IDX.mat`` (1-based rows of the test tracks that are
queries). As in torchreid, the gallery is every other test tracklet, junk
tracklets (pid -1) are dropped and tracklets shorter than ``min_seq_len``
are skipped. Each frame is one record carrying its tracklet id.
"""

from __future__ import annotations

import os

import numpy as np

from kreid.data.datasets import register
from kreid.data.datasets._common import find_root, require_file
from kreid.data.records import Record, ReidDataset, relabel
from kreid.errors import DatasetLayoutError


def _names(path: str) -> list[str]:
    require_file(path, "MARS frame-name list")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _mat(path: str, key: str) -> np.ndarray:
    import scipy.io

    require_file(path, f"MARS annotation ({key})")
    data = scipy.io.loadmat(path)
    if key not in data:
        raise DatasetLayoutError(f"{path}: expected variable {key!r}")
    return np.asarray(data[key])


def _tracklets(base, home, names, tracks, rows, min_seq_len) -> list[Record]:
    out = []
    for row in rows:
        start, end, pid, cam = (int(v) for v in tracks[row])
        if pid == -1 or end - start + 1 < min_seq_len:
            continue
        if not 1 <= start <= end <= len(names):
            raise DatasetLayoutError(f"MARS tracklet {row}: frames {start}..{end} outside "
                                     f"the {len(names)} names of {home}")
        for name in names[start - 1:end]:
            out.append(Record(os.path.join(base, home, name[:4], name), pid, cam - 1,
                              trackid=int(row)))
    return out


@register("mars")
def mars(root: str, min_seq_len: int = 0) -> ReidDataset:
    base = find_root(root, ("MARS", "mars"), "info")
    info = os.path.join(base, "info")
    train_names = _names(os.path.join(info, "train_name.txt"))
    test_names = _names(os.path.join(info, "test_name.txt"))
    track_train = _mat(os.path.join(info, "tracks_train_info.mat"), "track_train_info")
    track_test = _mat(os.path.join(info, "tracks_test_info.mat"), "track_test_info")
    query_idx = _mat(os.path.join(info, "query_IDX.mat"), "query_IDX").flatten() - 1
    is_query = np.zeros(len(track_test), bool)
    is_query[query_idx] = True
    ds = ReidDataset(
        "mars", base,
        relabel(_tracklets(base, "bbox_train", train_names, track_train,
                           range(len(track_train)), min_seq_len)),
        _tracklets(base, "bbox_test", test_names, track_test, np.flatnonzero(is_query),
                   min_seq_len),
        _tracklets(base, "bbox_test", test_names, track_test, np.flatnonzero(~is_query),
                   min_seq_len))
    ds.check_nonempty()
    return ds
