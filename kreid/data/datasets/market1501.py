"""Market-1501 and DukeMTMC-reID (same layout).

``bounding_box_train/``, ``bounding_box_test/``, ``query/`` with names
``PPPP_cC...jpg``; pid ``-1`` is junk (dropped), ``0000`` are distractors (kept
in the gallery). Market's optional 500k distractor set lives in ``images/``.
Attributes come from ``market_attribute.mat`` / ``duke_attribute.mat``.
"""

from __future__ import annotations

import os
import re

from kreid.data.datasets import register
from kreid.data.datasets._common import find_root, list_images, parse, require_dir
from kreid.data.datasets.attributes import load_market_style_attributes
from kreid.data.records import Record, ReidDataset, attach_attributes, relabel

_NAME = re.compile(r"^(-?\d+)_c(\d+)")
_EXPECTED = "'PPPP_cC...' (identity, '_c', camera number), e.g. 0001_c1s1_000151_01.jpg"


def read_folder(folder: str, keep_junk: bool = False) -> list[Record]:
    """Records of one Market-style folder; camera ids become 0-based."""
    require_dir(folder, "Market-1501 style image folder")
    records = []
    for name in list_images(folder):
        pid, cam = (int(g) for g in parse(_NAME, name, folder, _EXPECTED))
        if pid == -1 and not keep_junk:
            continue
        records.append(Record(path=os.path.join(folder, name), pid=pid, camid=cam - 1))
    return records


def read_distractors(folder: str) -> list[Record]:
    """The 500k distractor images: every image is a gallery distractor (pid 0)."""
    require_dir(folder, "Market-1501 500k distractor folder")
    records = []
    for dirpath, _, files in os.walk(folder):
        for name in sorted(files):
            if not name.lower().endswith((".jpg", ".jpeg", ".png")):
                continue
            m = _NAME.match(name)
            records.append(Record(path=os.path.join(dirpath, name), pid=0,
                                  camid=int(m.group(2)) - 1 if m else -1))
    return records


def _load(name: str, root: str, candidates: tuple[str, ...], attribute_file: str,
          distractors: bool | str = False, attributes: bool = True) -> ReidDataset:
    base = find_root(root, candidates, "bounding_box_train")
    train = relabel(r for r in read_folder(os.path.join(base, "bounding_box_train"))
                    if r.pid != 0)
    query = [r for r in read_folder(os.path.join(base, "query")) if r.pid != 0]
    gallery = read_folder(os.path.join(base, "bounding_box_test"))
    if distractors:
        folder = distractors if isinstance(distractors, str) else os.path.join(base, "images")
        gallery += read_distractors(folder)
    names: tuple[str, ...] = ()
    attr_path = os.path.join(base, attribute_file)
    if attributes and os.path.isfile(attr_path):
        names, table = load_market_style_attributes(attr_path)
        train, query, gallery = (attach_attributes(s, table) for s in (train, query, gallery))
    ds = ReidDataset(name, base, train, query, gallery, attribute_names=names)
    ds.check_nonempty()
    return ds


@register("market1501")
def market1501(root: str, distractors: bool | str = False, attributes: bool = True) -> ReidDataset:
    """Market-1501. ``distractors=True`` adds ``images/`` (the 500k set) to the gallery."""
    return _load("market1501", root, ("Market-1501-v15.09.15", "market1501", "Market-1501"),
                 "market_attribute.mat", distractors, attributes)


@register("dukemtmc")
def dukemtmc(root: str, attributes: bool = True) -> ReidDataset:
    """DukeMTMC-reID."""
    return _load("dukemtmc", root, ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmcreid"),
                 "duke_attribute.mat", False, attributes)


@register("synthetic")
def synthetic(root: str, generate: bool = True, **generate_options) -> ReidDataset:
    """The embedded default, read with the Market loader.

    Generated into ``root`` when absent; an existing set is used as it is unless
    generation options are given (then it is regenerated if they differ).
    """
    from kreid.data import synthetic as synth

    exists = os.path.exists(os.path.join(root, "synthetic.json"))
    if generate and (generate_options or not exists):
        synth.generate(root, **generate_options)
    ds = market1501(root, attributes=False)
    names, table = synth.load_attributes(root)
    ds.train, ds.query, ds.gallery = (attach_attributes(s, table)
                                      for s in (ds.train, ds.query, ds.gallery))
    ds.name, ds.attribute_names = "synthetic", names
    return ds
