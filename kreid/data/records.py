"""Plain-data records and the dataset container every loader returns.

A record knows nothing of TensorFlow: it is the path of one image plus its
identity, camera, optional tracklet and optional attribute vector.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from kreid.errors import EmptySplitError


@dataclasses.dataclass(frozen=True)
class Record:
    """One image of a re-identification dataset.

    Attributes:
      path: absolute path of the image file.
      pid: identity as the dataset numbers it (original id). Market rules:
        ``0`` is a distractor, ``-1`` junk (loaders drop junk).
      camid: 0-based camera index (``-1`` when the dataset has no cameras).
      label: contiguous class index 0..N-1 over the *training* identities,
        for losses that need one; ``-1`` in query/gallery records.
      trackid: tracklet index (MARS) or ``-1``.
      attributes: per-identity attribute vector (int8), or ``None``.
      frame: the frame number the crop was cut from (unlabelled target crops, whose
        tracks seen at the same time by one camera are two people), or ``-1``.
    """

    path: str
    pid: int
    camid: int
    label: int = -1
    trackid: int = -1
    attributes: tuple[int, ...] | None = None
    frame: int = -1


def relabel(records: Iterable[Record]) -> list[Record]:
    """Give train records contiguous labels 0..N-1 in sorted original-pid order."""
    records = list(records)
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [dataclasses.replace(r, label=mapping[r.pid]) for r in records]


def attach_attributes(records: Iterable[Record],
                      table: dict[int, Sequence[int]]) -> list[Record]:
    """Attach per-identity attribute vectors (identities absent from ``table`` get None)."""
    out = []
    for r in records:
        vec = table.get(r.pid)
        out.append(dataclasses.replace(
            r, attributes=None if vec is None else tuple(int(v) for v in vec)))
    return out


@dataclasses.dataclass
class ReidDataset:
    """What every loader returns: three lists of records plus metadata."""

    name: str
    root: str
    train: list[Record]
    query: list[Record]
    gallery: list[Record]
    attribute_names: tuple[str, ...] = ()
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def num_train_ids(self) -> int:
        return len({r.pid for r in self.train})

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """Column arrays (path, pid, camid, label, trackid) of one split."""
        recs = getattr(self, split)
        return {
            "path": np.array([r.path for r in recs], dtype=object),
            "pid": np.array([r.pid for r in recs], dtype=np.int64),
            "camid": np.array([r.camid for r in recs], dtype=np.int64),
            "label": np.array([r.label for r in recs], dtype=np.int64),
            "trackid": np.array([r.trackid for r in recs], dtype=np.int64),
        }

    def check_nonempty(self, *splits: str) -> None:
        for split in splits or ("train", "query", "gallery"):
            if not getattr(self, split):
                raise EmptySplitError(
                    f"dataset {self.name!r} at {self.root}: split {split!r} is empty; "
                    "check the root folder and the loader options")

    def summary(self) -> str:
        lines = [f"{self.name} ({self.root})",
                 "  split      ids   images  cameras"]
        for split in ("train", "query", "gallery"):
            recs = getattr(self, split)
            ids = len({r.pid for r in recs})
            cams = len({r.camid for r in recs})
            lines.append(f"  {split:<8}{ids:>6}{len(recs):>9}{cams:>9}")
        return "\n".join(lines)


def attribute_matrix(records: Sequence[Record]) -> np.ndarray:
    """[N, M] int array of the records' attributes (-1 where a record has none)."""
    width = max((len(r.attributes) for r in records if r.attributes is not None), default=0)
    out = np.full((len(records), width), -1, np.int64)
    for i, r in enumerate(records):
        if r.attributes is not None:
            out[i, :len(r.attributes)] = r.attributes
    return out


def attribute_columns(attributes: np.ndarray) -> np.ndarray:
    """Indices of the binary attribute columns (values within {-1, 0, 1})."""
    if attributes.size == 0:
        return np.zeros(0, int)
    return np.flatnonzero((attributes <= 1).all(0) & (attributes >= -1).all(0))


def holdout(records: list[Record], num_ids: int, seed: int):
    """Split ``num_ids`` training identities off as a validation query/gallery set
    (the first image - or tracklet, when records have track ids - per identity and
    camera is the query, the rest gallery)."""
    pids = sorted({r.pid for r in records})
    if not 0 < num_ids < len(pids):
        raise ValueError(f"validation.holdout_ids={num_ids} must be in 1..{len(pids) - 1}")
    val = set(np.random.default_rng(seed).choice(pids, num_ids, replace=False).tolist())
    train = relabel([r for r in records if r.pid not in val])
    query, gallery, first = [], [], {}
    for r in sorted((r for r in records if r.pid in val), key=lambda r: r.path):
        key = (r.pid, r.camid)
        unit = r.trackid if r.trackid >= 0 else r.path     # whole tracklets stay together
        first.setdefault(key, unit)
        (query if first[key] == unit else gallery).append(dataclasses.replace(r, label=-1))
    return train, query, gallery
