"""Every loader on a tiny fixture written in the dataset's exact on-disk layout."""

import collections
import os

import numpy as np
import pytest
import scipy.io

from kreid.data import datasets
from kreid.errors import DatasetLayoutError, EmptySplitError
from tests.conftest import write_image


def _touch_all(folder, names):
    for i, n in enumerate(names):
        write_image(os.path.join(folder, n), seed=i)


def _market_fixture(root, duke=False):
    cam = (lambda c: f"c{c}_f00{c}1234") if duke else (lambda c: f"c{c}s1_000151_01")
    _touch_all(os.path.join(root, "bounding_box_train"),
               [f"0002_{cam(1)}.jpg", f"0002_{cam(2)}.jpg", f"0007_{cam(3)}.jpg",
                f"0007_{cam(1)}.jpg", f"0011_{cam(2)}.jpg"])
    _touch_all(os.path.join(root, "query"), [f"0003_{cam(1)}.jpg", f"0005_{cam(2)}.jpg"])
    _touch_all(os.path.join(root, "bounding_box_test"),
               [f"0003_{cam(2)}.jpg", f"0003_{cam(1)}.jpg", f"0005_{cam(3)}.jpg",
                f"0000_{cam(4)}.jpg", f"-1_{cam(2)}.jpg"])


def test_market1501_counts_junk_distractors_relabel(tmp_path):
    root = tmp_path / "Market-1501-v15.09.15"
    _market_fixture(str(root))
    ds = datasets.load("market1501", str(tmp_path))
    assert [len(ds.train), len(ds.query), len(ds.gallery)] == [5, 2, 4]
    assert sorted({r.pid for r in ds.train}) == [2, 7, 11]
    assert {r.pid: r.label for r in ds.train} == {2: 0, 7: 1, 11: 2}
    assert all(r.label == -1 for r in ds.query + ds.gallery)
    assert -1 not in {r.pid for r in ds.gallery}          # junk dropped
    assert 0 in {r.pid for r in ds.gallery}               # distractor kept
    assert {r.camid for r in ds.train} == {0, 1, 2}        # 0-based cameras
    assert all(os.path.isfile(r.path) for r in ds.train)


def test_market1501_500k_distractors(tmp_path):
    _market_fixture(str(tmp_path))
    _touch_all(str(tmp_path / "images" / "00"), ["0000_c1s1_000001_01.jpg",
                                                "0000_c6s2_000002_01.jpg", "odd.jpg"])
    ds = datasets.load("market1501", str(tmp_path), distractors=True)
    extra = ds.gallery[4:]
    assert len(extra) == 3 and {r.pid for r in extra} == {0}
    assert sorted(r.camid for r in extra) == [-1, 0, 5]   # unparsable name: no camera


def test_dukemtmc_layout(tmp_path):
    _market_fixture(str(tmp_path / "DukeMTMC-reID"), duke=True)
    ds = datasets.load("dukemtmc", str(tmp_path))
    assert [len(ds.train), len(ds.query), len(ds.gallery)] == [5, 2, 4]


def test_market_unparsable_name_names_the_file(tmp_path):
    _market_fixture(str(tmp_path))
    write_image(str(tmp_path / "query" / "holiday.jpg"))
    with pytest.raises(DatasetLayoutError, match="holiday.jpg.*expected"):
        datasets.load("market1501", str(tmp_path))


def test_missing_folder_names_the_path(tmp_path):
    (tmp_path / "bounding_box_train").mkdir()
    with pytest.raises(DatasetLayoutError, match="query"):
        datasets.load("market1501", str(tmp_path))
    with pytest.raises(DatasetLayoutError, match="bounding_box_train"):
        datasets.load("market1501", str(tmp_path / "nothing"))


def test_empty_split_is_an_error(tmp_path):
    for d in ("bounding_box_train", "query", "bounding_box_test"):
        (tmp_path / d).mkdir()
    with pytest.raises(EmptySplitError, match="train"):
        datasets.load("market1501", str(tmp_path))


def test_market_attributes_mat(tmp_path):
    from kreid.data.datasets.attributes import MARKET_ATTRIBUTES

    _market_fixture(str(tmp_path))

    def split(ids, offset):
        d = {n: np.array([1 + (i + offset + j) % 2 for i in range(len(ids))], np.uint8)
             for j, n in enumerate(MARKET_ATTRIBUTES)}
        d["age"] = np.array([1 + (i % 4) for i in range(len(ids))], np.uint8)
        d["image_index"] = np.array(ids, dtype=object)
        return d

    scipy.io.savemat(str(tmp_path / "market_attribute.mat"), {"market_attribute": {
        "train": split(["0002", "0007", "0011"], 0), "test": split(["0003", "0005"], 1)}})
    ds = datasets.load("market1501", str(tmp_path))
    assert len(ds.attribute_names) == 27
    by_pid = {r.pid: r.attributes for r in ds.train}
    assert by_pid[2][0] == 0 and by_pid[7][0] == 1            # age 1..4 -> 0..3
    assert by_pid[2][1] == 1 and by_pid[7][1] == 0            # backpack (2=yes -> 1)
    assert ds.query[0].attributes is not None


def test_duke_attributes_missing_field(tmp_path):
    _market_fixture(str(tmp_path / "DukeMTMC-reID"))
    bad = {"backpack": np.array([1]), "image_index": np.array(["0002"], dtype=object)}
    scipy.io.savemat(str(tmp_path / "DukeMTMC-reID" / "duke_attribute.mat"),
                     {"duke_attribute": {"train": bad, "test": bad}})
    with pytest.raises(DatasetLayoutError, match="lacks fields"):
        datasets.load("dukemtmc", str(tmp_path))


def test_msmt17_lists(tmp_path):
    base = tmp_path / "MSMT17_V1"
    lines = {"list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0",
                                "0000/0000_001_05_0303morning_0016_0.jpg 0"],
             "list_val.txt": ["0001/0001_000_03_0303noon_0001_0.jpg 1"],
             "list_query.txt": ["0000/0000_000_07_0303noon_0001_0.jpg 0"],
             "list_gallery.txt": ["0000/0000_003_02_0303noon_0002_0.jpg 0",
                                  "0001/0001_002_15_0303noon_0003_0.jpg 1"]}
    for fname, rows in lines.items():
        os.makedirs(base, exist_ok=True)
        (base / fname).write_text("\n".join(rows) + "\n")
        sub = "train" if fname in ("list_train.txt", "list_val.txt") else "test"
        for row in rows:
            write_image(str(base / sub / row.split()[0]))
    ds = datasets.load("msmt17", str(tmp_path))
    assert [len(ds.train), len(ds.query), len(ds.gallery)] == [3, 1, 2]
    assert [r.camid for r in ds.train] == [0, 4, 2]
    assert sorted(r.camid for r in ds.gallery) == [1, 14]
    assert len(datasets.load("msmt17", str(tmp_path), use_val=False).train) == 2
    (base / "list_query.txt").write_text("garbage\n")
    with pytest.raises(DatasetLayoutError, match="list_query.txt:1"):
        datasets.load("msmt17", str(tmp_path))


def test_cuhk03_folder_layout_protocol(tmp_path):
    for split, n_ids in (("train", 3), ("val", 2)):
        names = [f"{p:04d}_{i:02d}.jpg" for p in range(n_ids) for i in (0, 1, 3, 5, 6, 9)]
        _touch_all(str(tmp_path / split), names)
    ds = datasets.load("cuhk03", str(tmp_path))
    assert len(ds.train) == 18 and ds.num_train_ids == 3
    assert len(ds.query) == 4 and len(ds.gallery) == 8      # one query per id and camera
    assert {os.path.basename(r.path) for r in ds.query} == {
        "0000_00.jpg", "0000_05.jpg", "0001_00.jpg", "0001_05.jpg"}
    assert {r.camid for r in ds.train} == {0, 1}


def _write_cuhk03_mat(path, num_pairs=2, num_pids=3):
    """A cuhk-03.mat in MATLAB v7.3 (HDF5) form: cells of image references."""
    import h5py

    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        pair_refs = np.zeros((1, num_pairs), dtype=h5py.ref_dtype)
        n = 0
        for pair in range(num_pairs):
            cells = np.zeros((10, num_pids), dtype=h5py.ref_dtype)  # stored transposed
            for pid in range(num_pids):
                for idx in range(10):
                    if idx == 9 and pid == 0:  # an empty cell, as in the real file
                        data = np.zeros(2, np.uint64)
                    else:
                        img = np.full((16, 8, 3), (pair * 50 + pid * 10 + idx) % 255, np.uint8)
                        data = img.T
                    cells[idx, pid] = refs.create_dataset(f"i{n}", data=data).ref
                    n += 1
            pair_refs[0, pair] = refs.create_dataset(f"p{pair}", data=cells).ref
        f.create_dataset("labeled", data=pair_refs)


def test_cuhk03_official_mat_new_protocol(tmp_path):
    _write_cuhk03_mat(str(tmp_path / "cuhk-03.mat"))
    files = ["1_001_1_01.png", "1_001_2_06.png", "1_002_1_01.png", "1_002_2_07.png",
             "2_001_1_02.png", "2_001_2_08.png"]
    scipy.io.savemat(str(tmp_path / "cuhk03_new_protocol_config_labeled.mat"), {
        "train_idx": np.array([[1], [2], [3], [4]]), "query_idx": np.array([[5]]),
        "gallery_idx": np.array([[6]]), "labels": np.array([[1], [1], [2], [2], [3], [3]]),
        "camId": np.array([[1], [2], [1], [2], [1], [2]]),
        "filelist": np.array([[f] for f in files], dtype=object)})
    ds = datasets.load("cuhk03", str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert [len(ds.train), len(ds.query), len(ds.gallery)] == [4, 1, 1]
    assert [r.label for r in ds.train] == [0, 0, 1, 1]
    assert [r.camid for r in ds.train] == [0, 1, 0, 1]
    assert all(os.path.isfile(r.path) for r in ds.train + ds.query + ds.gallery)
    extracted = os.listdir(tmp_path / "cache" / "images_labeled")
    assert "1_001_2_10.png" not in extracted and "1_002_2_10.png" in extracted  # empty cell
    assert len([e for e in extracted if e.endswith(".png")]) == 2 * 3 * 10 - 2


def test_cuhk03_unknown_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match="train/ and val/"):
        datasets.load("cuhk03", str(tmp_path))


def _peta_label(folder, pids):
    rows = [f"{p} upperBodyBlue upperBodyRed lowerBodyBlack personalMale footwearSneakers "
            f"accessoryShawl" for p in pids]
    (folder / "Label.txt").write_text("\n".join(rows) + "\n")


def test_viper_split_and_attributes(tmp_path):
    folder = tmp_path / "VIPeR"
    pids = [0, 5, 9, 12, 20, 33]
    _touch_all(str(folder), [f"{p:03d}_{a}_{c}.png" for p in pids for a, c in ((0, 1), (90, 2))])
    _peta_label(folder, pids)
    ds = datasets.load("viper", str(tmp_path), seed=3)
    assert len(ds.train) == 6 and len(ds.query) == 3 and len(ds.gallery) == 3
    assert {r.camid for r in ds.query} == {0} and {r.camid for r in ds.gallery} == {1}
    assert not {r.pid for r in ds.train} & {r.pid for r in ds.query}
    again = datasets.load("viper", str(tmp_path), seed=3)
    assert [r.path for r in again.query] == [r.path for r in ds.query]
    other = datasets.load("viper", str(tmp_path), seed=4)
    assert {r.pid for r in other.query} != {r.pid for r in ds.query}
    from kreid.data.datasets.attributes import PETA_BINARY, PETA_COLOURS
    names, vec = ds.attribute_names, ds.train[0].attributes
    assert len(names) == 65 and len(vec) == 65
    assert vec[PETA_BINARY.index("personalMale")] == 1
    assert vec[PETA_BINARY.index("footwearSneaker")] == 1
    assert vec[names.index("upperBodyColor")] == PETA_COLOURS.index("Blue")  # first listed
    assert vec[names.index("hairColor")] == -1


def test_prid_protocol(tmp_path):
    folder = tmp_path / "PRID"
    names = [f"{p:04d}_a.png" for p in range(1, 7)] + [f"{p:04d}_b.png" for p in range(1, 5)]
    names += [f"{p:04d}_b.png" for p in (10, 11, 12)]
    _touch_all(str(folder), names)
    ds = datasets.load("prid", str(tmp_path), num_test_ids=2)
    assert len(ds.train) == 4 and len(ds.query) == 2
    assert len(ds.gallery) == 2 + 3                       # test cam-b + b-only distractors
    assert {5, 6}.isdisjoint({r.pid for r in ds.train + ds.query + ds.gallery})


def test_grid_protocol(tmp_path):
    folder = tmp_path / "GRID"
    names = [f"{p:04d}_{c}_25004_1_2_3_4.jpeg" for p in (1, 2, 3, 4) for c in (1, 3)]
    names += [f"{p:04d}_5_25004_1_2_3_4.jpeg" for p in (5, 6, 7)]
    _touch_all(str(folder), names)
    ds = datasets.load("grid", str(tmp_path))
    assert len(ds.train) == 4 and len(ds.query) == 2 and len(ds.gallery) == 2 + 3
    assert {r.camid for r in ds.query} == {0}


@pytest.mark.parametrize("name,subset,pattern", [
    ("ilids", "iLIDS", "{p:04d}_{i:03d}.jpg"),
    ("3dpes", "3DPeS", "{p}_{i}_FRAME_{i}_RGB.png")])
def test_no_camera_subsets(tmp_path, name, subset, pattern):
    names = [pattern.format(p=p, i=i) for p in range(1, 7) for i in range(1, 4)]
    names.append(pattern.format(p=9, i=1))  # single-image identity -> train
    _touch_all(str(tmp_path / subset), names)
    ds = datasets.load(name, str(tmp_path))
    assert len(ds.query) == 3 and len(ds.gallery) == 6
    assert {r.camid for r in ds.query} == {0} and {r.camid for r in ds.gallery} == {1}
    assert 9 in {r.pid for r in ds.train}


def test_cuhk01_layout(tmp_path):
    _touch_all(str(tmp_path / "campus"), [f"{p:04d}{i:03d}.png" for p in range(1, 5)
                                          for i in range(1, 5)])
    ds = datasets.load("cuhk01", str(tmp_path))
    assert len(ds.query) == 4 and len(ds.gallery) == 4 and len(ds.train) == 8
    assert {r.camid for r in ds.query} == {0}


def test_mars_tracklets(tmp_path):
    info = tmp_path / "info"
    info.mkdir()
    train = ["0001C1T0001F001.jpg", "0001C1T0001F002.jpg", "0003C2T0002F001.jpg"]
    test = ["0002C1T0001F001.jpg", "0002C1T0001F002.jpg", "0002C3T0001F001.jpg",
            "00-1C2T0001F001.jpg", "0000C4T0003F001.jpg"]
    (info / "train_name.txt").write_text("\n".join(train))
    (info / "test_name.txt").write_text("\n".join(test))
    for home, names in (("bbox_train", train), ("bbox_test", test)):
        _touch_all(str(tmp_path / home / "dummy"), [])
        for n in names:
            write_image(str(tmp_path / home / n[:4] / n))
    scipy.io.savemat(str(info / "tracks_train_info.mat"),
                     {"track_train_info": np.array([[1, 2, 1, 1], [3, 3, 3, 2]])})
    scipy.io.savemat(str(info / "tracks_test_info.mat"), {"track_test_info": np.array(
        [[1, 2, 2, 1], [3, 3, 2, 3], [4, 4, -1, 2], [5, 5, 0, 4]])})
    scipy.io.savemat(str(info / "query_IDX.mat"), {"query_IDX": np.array([[1]])})
    ds = datasets.load("mars", str(tmp_path))
    assert len(ds.train) == 3 and ds.num_train_ids == 2
    assert [r.trackid for r in ds.query] == [0, 0]
    assert [r.pid for r in ds.gallery] == [2, 0]          # junk tracklet dropped
    assert [r.camid for r in ds.gallery] == [2, 3]
    with pytest.raises(EmptySplitError, match="gallery"):  # every gallery tracklet too short
        datasets.load("mars", str(tmp_path), min_seq_len=2)


def test_veri776(tmp_path):
    names = {"train": ["0001_c001_00016450_0.jpg", "0001_c002_00016460_0.jpg",
                       "0004_c003_00000010_1.jpg"],
             "query": ["0002_c002_00030600_1.jpg"],
             "test": ["0002_c003_00030610_1.jpg", "0002_c004_00030620_0.jpg"]}
    for split, ns in names.items():
        _touch_all(str(tmp_path / "VeRi" / f"image_{split}"), ns)
    (tmp_path / "VeRi" / "name_test.txt").write_text(names["test"][0] + "\n")
    ds = datasets.load("veri776", str(tmp_path))
    assert len(ds.train) == 3 and ds.num_train_ids == 2
    assert len(ds.gallery) == 1                             # name list honoured
    assert ds.query[0].camid == 1


def test_vehicleid_sizes(tmp_path):
    base = tmp_path / "VehicleID_V1.0"
    split = base / "train_test_split"
    split.mkdir(parents=True)
    (split / "train_list.txt").write_text("0000001 1\n0000002 1\n0000003 2\n")
    (split / "test_list_800.txt").write_text("0000004 7\n0000005 7\n0000006 7\n0000007 8\n")
    for i in range(1, 8):
        write_image(str(base / "image" / f"{i:07d}.jpg"))
    ds = datasets.load("vehicleid", str(tmp_path), test_size="small")
    assert len(ds.train) == 3 and len(ds.gallery) == 2 and len(ds.query) == 2
    with pytest.raises(DatasetLayoutError, match="test_list_1600"):
        datasets.load("vehicleid", str(tmp_path), test_size="medium")
    with pytest.raises(ValueError, match="test_size"):
        datasets.load("vehicleid", str(tmp_path), test_size="huge")


def test_csv_and_folder(tmp_path):
    for p in (3, 8):
        for i in range(2):
            write_image(str(tmp_path / "train" / str(p) / f"{p}_c{i + 1}_{i}.jpg"))
    write_image(str(tmp_path / "query" / "3" / "a.jpg"))
    write_image(str(tmp_path / "gallery" / "3" / "b.jpg"))
    ds = datasets.load("folder", str(tmp_path))
    assert ds.num_train_ids == 2 and [r.camid for r in ds.train][:2] == [0, 1]
    assert ds.query[0].camid == 0 and ds.gallery[0].camid == 1
    (tmp_path / "train.csv").write_text("3,train/3/3_c1_0.jpg\n8,train/8/8_c2_1.jpg,5\n")
    (tmp_path / "query.csv").write_text("3,query/3/a.jpg\n")
    (tmp_path / "gallery.csv").write_text("3,gallery/3/b.jpg\n")
    ds = datasets.load("csv", str(tmp_path))
    assert [r.camid for r in ds.train] == [0, 5] and [r.label for r in ds.train] == [0, 1]
    (tmp_path / "query.csv").write_text("three,query/3/a.jpg\n")
    with pytest.raises(DatasetLayoutError, match="query.csv:1"):
        datasets.load("csv", str(tmp_path))


def test_unknown_dataset_lists_names():
    with pytest.raises(KeyError, match="market1501"):
        datasets.load("nope", "/tmp")


@pytest.mark.realdata
def test_real_cuhk03_labeled_counts(real_data):
    ds = datasets.load("cuhk03", os.path.join(real_data, "cuhk03_labeled"))
    assert len(ds.train) == 7239 and ds.num_train_ids == 743
    assert len(ds.query) == 200 and len(ds.gallery) == 738
    assert len({r.pid for r in ds.query}) == 100


@pytest.mark.realdata
@pytest.mark.parametrize("name,train_ids,queries,gallery", [
    ("viper", 316, 316, 316), ("prid", 100, 100, 649), ("grid", 125, 125, 900)])
def test_real_peta_subsets(real_data, name, train_ids, queries, gallery):
    ds = datasets.load(name, os.path.join(real_data, "peta"))
    assert (ds.num_train_ids, len(ds.query), len(ds.gallery)) == (train_ids, queries, gallery)
    assert len(ds.attribute_names) == 65
    assert all(r.attributes is not None for r in ds.train)


@pytest.mark.parametrize("name,sub", [("cuhk01", "campus"), ("viper", "VIPeR"),
                                      ("ilids", "iLIDS"), ("prid", "PRID"), ("grid", "GRID"),
                                      ("3dpes", "3DPeS")])
def test_small_sets_on_an_empty_folder_name_it(tmp_path, name, sub):
    from kreid.data import datasets
    from kreid.errors import DatasetLayoutError

    (tmp_path / sub).mkdir()
    with pytest.raises(DatasetLayoutError, match=sub):
        datasets.load(name, str(tmp_path))


def test_joint_trains_on_every_extra_image_and_tests_on_the_primary(real_data):
    cuhk = datasets.load("cuhk03", os.path.join(real_data, "cuhk03_labeled"))
    peta = os.path.join(real_data, "peta")
    ds = datasets.load("joint", os.path.join(real_data, "cuhk03_labeled"),
                       extra=[f"viper:{peta}", f"grid:{peta}"])
    assert [r.path for r in ds.query] == [r.path for r in cuhk.query]
    assert [r.path for r in ds.gallery] == [r.path for r in cuhk.gallery]
    viper = datasets.load("viper", peta)
    viper_paths = {r.path for r in viper.train + viper.query + viper.gallery}
    train_paths = [r.path for r in ds.train]
    assert len(train_paths) == len(set(train_paths))
    assert viper_paths <= set(train_paths)               # its test split trains here too
    assert ds.meta["extra"]["viper"] == {"identities": 632, "images": 1264}   # 000 is a person
    assert ds.meta["extra"]["grid"] == {"identities": 250, "images": 500}   # singles dropped
    assert ds.num_train_ids == cuhk.num_train_ids + 632 + 250
    by_source = collections.defaultdict(set)             # no identity or camera is shared
    cams = collections.defaultdict(set)
    for r in ds.train:
        source = "viper" if r.path in viper_paths else ("cuhk03" if "cuhk03" in r.path else "grid")
        by_source[source].add(r.pid)
        cams[source].add(r.camid)
    assert not (by_source["cuhk03"] & by_source["viper"]) and not (
        by_source["viper"] & by_source["grid"])
    assert not (cams["cuhk03"] & cams["viper"]) and not (cams["viper"] & cams["grid"])
    assert sorted({r.label for r in ds.train}) == list(range(ds.num_train_ids))
    assert all(r.attributes is None for r in ds.train)
    with pytest.raises(ValueError, match="extra.*'viper'.*name:root"):
        datasets.load("joint", os.path.join(real_data, "cuhk03_labeled"), extra=["viper"])
    primary_train = [(r.path, r.pid, r.camid) for r in cuhk.train]
    assert [(r.path, r.pid, r.camid) for r in ds.train[:len(cuhk.train)]] == primary_train


def test_joint_keeps_cameraless_sets_cameraless_and_refuses_test_leaks(real_data):
    peta = os.path.join(real_data, "peta")
    ds = datasets.load("joint", os.path.join(real_data, "cuhk03_labeled"),
                       extra=[f"ilids:{peta}", f"ilids:{peta}"])   # listed twice: once
    ilids = datasets.load("ilids", peta)
    extra = [r for r in ds.train if "iLIDS" in r.path]
    assert {r.camid for r in extra} == {-1}
    assert len(extra) == len({r.path for r in extra}) == ds.meta["extra"]["ilids"]["images"]
    per_id = collections.Counter(r.pid for r in ilids.train + ilids.query + ilids.gallery)
    assert len(extra) == sum(n for n in per_id.values() if n >= 2)     # min_images=2
    with pytest.raises(ValueError, match="test split of viper"):
        datasets.load("joint", peta, primary="viper", extra=[f"viper:{peta}"])
