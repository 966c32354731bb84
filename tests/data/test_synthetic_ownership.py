"""kreid.data.synthetic.generate never deletes or overwrites a file it did not write (#12.1)."""

import os

import pytest

from kreid.data import synthetic
from kreid.errors import ForeignDataError
from tests.conftest import write_image

SMALL = dict(num_identities=4, num_cameras=2, seed=0, images_per_camera=(1, 2))


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def test_refuses_a_real_dataset_folder_and_deletes_nothing(tmp_path):
    # a user's Market-1501 copy: same folder names, no synthetic.json
    root = tmp_path / "Market-1501"
    for i, split in enumerate(("bounding_box_train", "query", "bounding_box_test")):
        write_image(str(root / split / f"0002_c1s1_00000{i}_00.jpg"), seed=i)
    before = {f: open(root / f, "rb").read() for f in _files(root)}
    with pytest.raises(ForeignDataError, match="Market-1501") as err:
        synthetic.generate(str(root), **SMALL)
    assert "bounding_box_test/0002_c1s1_000002_00.jpg" in str(err.value)   # first foreign file
    assert {f: open(root / f, "rb").read() for f in _files(root)} == before


def test_refuses_a_folder_with_any_other_file(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ForeignDataError, match="notes.txt"):
        synthetic.generate(str(tmp_path), **SMALL)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_regeneration_removes_only_its_own_files(tmp_path):
    root = str(tmp_path / "syn")
    first = synthetic.generate(root, **SMALL)
    written = _files(root)
    assert first["manifest"] == synthetic.MANIFEST
    listed = set(open(os.path.join(root, synthetic.MANIFEST)).read().split())
    assert {f for f in written if f not in (synthetic.META, synthetic.MANIFEST)} == listed
    # other settings: the old images go, the new set is complete
    synthetic.generate(root, **{**SMALL, "seed": 1})
    assert set(open(os.path.join(root, synthetic.MANIFEST)).read().split()) == \
        {f for f in _files(root) if f not in (synthetic.META, synthetic.MANIFEST)}
    # a file the user dropped in stops any further regeneration, and survives
    mine = os.path.join(root, "bounding_box_train", "0001_c1s1_999999_01.jpg")
    write_image(mine)
    with pytest.raises(ForeignDataError, match="0001_c1s1_999999_01.jpg"):
        synthetic.generate(root, **{**SMALL, "seed": 2})
    assert os.path.isfile(mine)


def test_interrupted_generation_is_cleaned_up_and_redone(tmp_path, monkeypatch):
    import cv2

    root = str(tmp_path / "syn")
    calls = {"n": 0}
    real = cv2.imwrite

    def dying_imwrite(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imwrite", dying_imwrite)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(root, **SMALL)
    monkeypatch.setattr(cv2, "imwrite", real)
    assert not os.path.exists(os.path.join(root, synthetic.META))   # not taken as complete
    meta = synthetic.generate(root, **SMALL)
    assert sum(meta["counts"].values()) == len(_files(root)) - 2
