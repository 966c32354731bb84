"""Unlabelled target crops: the folder and CSV layouts, and their errors."""

import os

import pytest

from kreid.data import datasets
from kreid.data.datasets.unlabelled import frame_of
from kreid.errors import DatasetLayoutError, EmptySplitError
from tests.conftest import write_image


def test_frame_numbers_from_file_names():
    assert frame_of("t0007_f000123.jpg") == 123
    assert frame_of("frame42.png") == 42
    assert frame_of("cam1-f7-x.jpg") == 7
    assert frame_of("0001_c1s1_001051_00.jpg") == -1      # Market names carry no f<N>
    assert frame_of("face3.jpg") == -1


def test_camera_track_folders(tmp_path):
    root = tmp_path / "cams"
    for cam in ("cam1", "cam2"):
        for track in ("track0001", "track0002"):
            for f in (10, 11):
                write_image(str(root / cam / track / f"{track}_f{f:04d}.jpg"))
    write_image(str(root / "cam2" / "loose.jpg"))
    ds = datasets.load("unlabelled", str(root))
    assert len(ds.train) == 9 and not ds.query and not ds.gallery
    assert {r.pid for r in ds.train} == {-1}
    tracks = {(r.camid, r.trackid) for r in ds.train if r.trackid >= 0}
    assert tracks == {(0, 0), (0, 1), (1, 2), (1, 3)}             # ids unique over cameras
    loose = [r for r in ds.train if r.path.endswith("loose.jpg")][0]
    assert loose.trackid == -1 and loose.camid == 1 and loose.frame == -1
    assert sorted({r.frame for r in ds.train if r.trackid >= 0}) == [10, 11]
    assert ds.meta == {"cameras": 2, "tracks": 4}
    flat = datasets.load("unlabelled", str(root / "cam1"), folders="track")
    assert {r.trackid for r in flat.train} == {0, 1} and {r.camid for r in flat.train} == {-1}


def test_csv_layout(tmp_path):
    for i in range(3):
        write_image(str(tmp_path / f"c{i}.jpg"))
    (tmp_path / "crops.csv").write_text("path,camera,track,frame\nc0.jpg,1,7,100\n"
                                        "c1.jpg,,,\nc2.jpg,2\n")
    ds = datasets.load("unlabelled_csv", str(tmp_path))
    assert [(r.camid, r.trackid, r.frame) for r in ds.train] == [(1, 7, 100), (-1, -1, -1),
                                                                   (2, -1, -1)]
    assert ds.train[0].path == os.path.join(str(tmp_path), "c0.jpg")


def test_bad_unlabelled_inputs_name_the_path(tmp_path):
    with pytest.raises(DatasetLayoutError, match=str(tmp_path / "missing")):
        datasets.load("unlabelled", str(tmp_path / "missing"))
    (tmp_path / "empty" / "cam1").mkdir(parents=True)
    with pytest.raises(EmptySplitError, match="empty.*no images"):
        datasets.load("unlabelled", str(tmp_path / "empty"))
    with pytest.raises(DatasetLayoutError, match="folders='cams'"):
        datasets.load("unlabelled", str(tmp_path), folders="cams")
    with pytest.raises(DatasetLayoutError, match="crops.csv.*missing file"):
        datasets.load("unlabelled_csv", str(tmp_path))
    (tmp_path / "crops.csv").write_text("a.jpg,1,x\n")
    with pytest.raises(DatasetLayoutError, match=r"crops.csv:1: track 'x'"):
        datasets.load("unlabelled_csv", str(tmp_path))
    (tmp_path / "crops.csv").write_text("path,camera\n")
    with pytest.raises(EmptySplitError, match="lists no crop"):
        datasets.load("unlabelled_csv", str(tmp_path))
