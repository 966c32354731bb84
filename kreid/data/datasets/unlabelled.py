"""Target crops without identity labels (domain adaptation, :mod:`kreid.adaptation`).

A user's own cameras give crops, often with the tracker's track ids, but no
cross-camera identities. Two layouts, both giving records with ``pid = -1``
(identity unknown), their camera, track and frame when known:

* ``unlabelled`` (folders), ``folders`` option saying what the levels are:

  - ``camera/track`` (default): ``root/<camera>/<track>/<image>``; images
    directly inside a camera folder have no track;
  - ``camera``: ``root/<camera>/<image>``;  ``track``: ``root/<track>/<image>``;
  - ``none``: ``root/<image>``.

  Camera and track folders are numbered in sorted name order (``cam1``,
  ``cam2``; ``track0007``): a track id is unique over the whole set. A frame
  number comes from the file name's ``f<digits>`` or ``frame<digits>`` (after
  the start, ``_`` or ``-``: ``t0007_f000123.jpg``, ``frame000123.png``), else
  it is unknown (-1).
* ``unlabelled_csv``: one line per crop, ``path[,camera[,track[,frame]]]``
  (an optional header line starting with ``path``; relative paths are joined to
  ``root``; empty or -1 fields are unknown). Camera and track are integers;
  track ids must be unique over the set (two cameras' tracks are two tracks).

A missing root, a folder without images or an empty list fails naming the
path; unreadable images fail when the adaptation first reads them, naming the
file (or are dropped and counted with ``--config.skip_corrupt``).
"""

from __future__ import annotations

import csv as csv_module
import os
import re

from kreid.data.datasets import register
from kreid.data.datasets._common import list_images, require_dir, require_file
from kreid.data.records import Record, ReidDataset
from kreid.errors import DatasetLayoutError, EmptySplitError

_FRAME = re.compile(r"(?:^|[_-])f(?:rame)?(\d+)(?:[_.-]|$)", re.IGNORECASE)
LEVELS = {"camera/track": ("camera", "track"), "camera": ("camera",),
          "track": ("track",), "none": ()}


def frame_of(name: str) -> int:
    """The frame number in a crop's file name (``..._f000123.jpg``), or -1."""
    m = _FRAME.search(os.path.splitext(os.path.basename(name))[0] + ".")
    return int(m.group(1)) if m else -1


def _subdirs(folder: str) -> list[str]:
    return sorted(d for d in os.listdir(folder)
                  if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))


def _walk(folder: str, levels: tuple[str, ...], camid: int, counter: list[int],
          records: list[Record]) -> None:
    """Read ``folder`` whose sub-folders are ``levels[0]``; images in it have no such level."""
    for name in list_images(folder):
        records.append(Record(os.path.join(folder, name), -1, camid,
                              frame=frame_of(name)))
    if not levels:
        return
    for i, sub in enumerate(_subdirs(folder)):
        path = os.path.join(folder, sub)
        if levels[0] == "camera":
            _walk(path, levels[1:], i, counter, records)
        else:                                      # a track: its images, one global id
            tid = counter[0]
            counter[0] += 1
            for name in list_images(path):
                records.append(Record(os.path.join(path, name), -1, camid, trackid=tid,
                                      frame=frame_of(name)))


def _dataset(name: str, root: str, records: list[Record], what: str) -> ReidDataset:
    if not records:
        raise EmptySplitError(f"{root}: no images found ({what})")
    ds = ReidDataset(name, root, records, [], [])
    ds.meta.update(cameras=len({r.camid for r in records if r.camid >= 0}),
                   tracks=len({r.trackid for r in records if r.trackid >= 0}))
    return ds


@register("unlabelled")
def unlabelled(root: str, folders: str = "camera/track") -> ReidDataset:
    """Unlabelled crops in folders (module docstring); ``folders`` names the levels."""
    if folders not in LEVELS:
        raise DatasetLayoutError(f"dataset.options.folders={folders!r}: expected one of "
                                 f"{', '.join(LEVELS)}")
    root = require_dir(os.path.abspath(os.path.expanduser(root)),
                       f"unlabelled crops, folders {folders}")
    records: list[Record] = []
    _walk(root, LEVELS[folders], -1, [0], records)
    return _dataset("unlabelled", root, records,
                    f"expected {'/'.join(f'<{x}>' for x in LEVELS[folders]) or 'images'} "
                    "under it")


def _optional_int(value: str, path: str, lineno: int, field: str) -> int:
    value = value.strip()
    if value in ("", "-1"):
        return -1
    try:
        number = int(value)
    except ValueError:
        raise DatasetLayoutError(f"{path}:{lineno}: {field} {value!r} is not an integer "
                                 "(expected path[,camera[,track[,frame]]])") from None
    if number < 0:
        raise DatasetLayoutError(f"{path}:{lineno}: {field} {number} is negative")
    return number


@register("unlabelled_csv")
def unlabelled_csv(root: str, csv: str = "crops.csv") -> ReidDataset:
    """Unlabelled crops listed in ``root/<csv>`` (or an absolute ``csv`` path)."""
    path = require_file(os.path.join(root, csv), "a list of path[,camera[,track[,frame]]]")
    records = []
    with open(path, newline="") as f:
        for lineno, row in enumerate(csv_module.reader(f), 1):
            if not row or not row[0].strip() or row[0].startswith("#") or (
                    lineno == 1 and row[0].strip().lower() == "path"):
                continue
            if len(row) > 4:
                raise DatasetLayoutError(f"{path}:{lineno}: {len(row)} fields; expected "
                                         "path[,camera[,track[,frame]]]")
            fields = row + [""] * (4 - len(row))
            camid, trackid, frame = (_optional_int(fields[i], path, lineno, what)
                                     for i, what in ((1, "camera"), (2, "track"),
                                                     (3, "frame")))
            records.append(Record(os.path.join(root, fields[0].strip()), -1, camid,
                                  trackid=trackid, frame=frame))
    return _dataset("unlabelled_csv", root, records, f"{path} lists no crop")
