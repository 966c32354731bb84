"""One strict sidecar schema, the atomic writer and fingerprints (#12.5, #12.7)."""

import errno
import json
import os

import pytest

from kreid_edge.files import WriteError, atomic_write, file_fingerprint, write_text
from kreid_edge.sidecar import Sidecar, SidecarError, read_sidecar, write_sidecar


def test_sidecar_round_trip_keeps_extra_keys(tmp_path):
    model = str(tmp_path / "m.tflite")
    s = Sidecar((128, 64), "imagenet", "trinet", "tflite_int8", 128, {"io_type": "int8"})
    write_sidecar(model, s)
    assert read_sidecar(model) == s
    assert json.load(open(model + ".json"))["schema"] == "kreid-sidecar/1"


def test_sidecar_written_before_the_schema_key_still_reads(tmp_path):
    model = str(tmp_path / "embedding.keras")
    json.dump({"model": "lunet", "input_size": [128, 64], "preprocessing": "scale",
               "embedding_dim": 128, "dataset": "market1501", "step": 25000},
              open(model + ".json", "w"))
    s = read_sidecar(model)
    assert s.input_size == (128, 64) and s.extra == {"dataset": "market1501", "step": 25000}


@pytest.mark.parametrize("meta,field", [
    ({"input_size": [128, 64]}, "preprocessing"),
    ({"preprocessing": "scale"}, "input_size"),
    ({"input_size": [128], "preprocessing": "scale"}, "input_size"),
    ({"input_size": [128, 64], "preprocessing": "caffe"}, "preprocessing"),
    ({"input_size": [128, 64], "preprocessing": "scale", "embedding_dim": -1}, "embedding_dim"),
    ([1, 2], "JSON object")])
def test_incomplete_sidecar_names_file_and_field(tmp_path, meta, field):
    model = str(tmp_path / "m.onnx")
    json.dump(meta, open(model + ".json", "w"))
    with pytest.raises(SidecarError, match=field) as err:
        read_sidecar(model)
    assert "m.onnx.json" in str(err.value)


def test_missing_or_broken_sidecar_names_the_way_to_supply_it(tmp_path):
    model = str(tmp_path / "m.keras")
    with pytest.raises(SidecarError, match=r"m\.keras\.json.*--preprocessing"):
        read_sidecar(model, "pass --preprocessing")
    (tmp_path / "m.keras.json").write_text("{not json")
    with pytest.raises(SidecarError, match="unreadable"):
        read_sidecar(model)


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = str(tmp_path / "out.txt")
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_write(path, "w") as f:
            f.write("half")
            raise RuntimeError("killed")
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["out.txt"]
    with pytest.raises(WriteError, match="out.txt.*No space"):
        with atomic_write(path, "w"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert os.listdir(tmp_path) == ["out.txt"]


def test_file_fingerprint_tracks_content(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"weights-1")
    b.write_bytes(b"weights-2")
    assert file_fingerprint(str(a)) != file_fingerprint(str(b))
    assert len(file_fingerprint(str(a))) == 16
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_bytes(b"1")
    before = file_fingerprint(str(tmp_path / "dir"))
    (tmp_path / "dir" / "x").write_bytes(b"2")
    assert file_fingerprint(str(tmp_path / "dir")) != before
