"""Pseudo-labelled training crops of an adaptation round (:mod:`kreid.adaptation`).

``root`` is the round's folder holding ``pseudo_labels.csv`` (``cluster,path,
camid,trackid`` per line, written by the round): the training split, one
pseudo-identity per cluster, outliers absent. The query and gallery splits are
the ``target`` dataset's (its registry name, ``target_root`` and
``target_options``), so an adaptation round evaluates on the target's test
split like any run; without a target they are empty (a user's own unlabelled
cameras have no test split).
"""

from __future__ import annotations

import csv as csv_module
import os

from kreid.data import datasets
from kreid.data.datasets import register
from kreid.data.datasets._common import require_file
from kreid.data.records import Record, ReidDataset, relabel
from kreid.errors import DatasetLayoutError

LABELS = "pseudo_labels.csv"
HEADER = ("cluster", "path", "camid", "trackid")


def write_labels(path: str, records, labels) -> None:
    """Write the clustered records (label >= 0) as ``path`` (the round's CSV), atomically."""
    import io

    from kreid_edge.files import write_text

    text = io.StringIO()
    writer = csv_module.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows((int(y), r.path, r.camid, r.trackid)
                     for r, y in zip(records, labels) if y >= 0)
    write_text(path, text.getvalue())


def read_labels(path: str) -> list[Record]:
    require_file(path, "pseudo labels of an adaptation round (cluster,path,camid,trackid)")
    out = []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv_module.reader(f), 1):
            if lineno == 1 and tuple(row) == HEADER:
                continue
            try:
                out.append(Record(row[1], int(row[0]), int(row[2]), trackid=int(row[3])))
            except (ValueError, IndexError) as exc:
                raise DatasetLayoutError(f"{path}:{lineno}: expected {','.join(HEADER)}, "
                                         f"got {','.join(row)!r}") from exc
    return out


@register("pseudo_labels")
def pseudo_labels(root: str, target: str = "", target_root: str = "",
                  target_options: dict | None = None) -> ReidDataset:
    train = relabel(read_labels(os.path.join(root, LABELS)))
    query, gallery = [], []
    if target:
        test = datasets.load(target, target_root, **dict(target_options or {}))
        query, gallery = test.query, test.gallery
    ds = ReidDataset("pseudo_labels", root, train, query, gallery)
    ds.check_nonempty("train")
    return ds
