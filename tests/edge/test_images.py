"""One image check for training and the device: JPEG completeness by marker walk (#12.4)."""

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from kreid.data import pipeline
from kreid_edge.images import ImageFileError, image_problem, jpeg_end, read_image
from kreid_edge.preprocessing import Preprocessor


def _jpeg(tmp_path, seed=0, params=()) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (40, 20, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), 90, *params])
    assert ok
    return buf.tobytes()


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_complete_jpeg_passes_everywhere(tmp_path):
    path = _write(tmp_path / "ok.jpg", _jpeg(tmp_path))
    assert image_problem(path) is None and pipeline.check_image(path) is None
    assert read_image(path).shape == (40, 20, 3)


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])   # extension must not matter
def test_truncated_jpeg_refused_whatever_its_extension(tmp_path, name):
    data = _jpeg(tmp_path)
    path = _write(tmp_path / name, data[:len(data) * 2 // 3])
    assert "truncated" in pipeline.check_image(path)
    with pytest.raises(ImageFileError, match=name):
        read_image(path)
    with pytest.raises(ImageFileError, match=name):        # the device refuses it too
        Preprocessor((64, 32), "scale")([path])
    with pytest.raises(tf.errors.InvalidArgumentError):    # as TensorFlow does in training
        pipeline.read_image(tf.constant(path)).numpy()


def test_trailing_bytes_after_end_of_image_are_fine(tmp_path):
    data = _jpeg(tmp_path)
    path = _write(tmp_path / "trailing.jpg", data + b"\x00garbage after EOI" * 10)
    assert pipeline.check_image(path) is None
    decoded = pipeline.read_image(tf.constant(path)).numpy()
    assert decoded.shape == (40, 20, 3)


def test_marker_walk_skips_segments_holding_ff_d9(tmp_path):
    # an APP1 segment (EXIF thumbnails are JPEGs: they contain FF D9) before the image
    data = _jpeg(tmp_path)
    payload = b"Exif\x00\x00" + b"\xff\xd8thumb\xff\xd9" * 3
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    full = data[:2] + app1 + data[2:]
    assert jpeg_end(full) == len(full)
    assert jpeg_end(full[:len(full) - 200]) is None          # cut inside the scan
    assert jpeg_end(full[:10]) is None                       # cut inside the APP1 segment


def test_progressive_jpeg_with_restart_markers(tmp_path):
    data = _jpeg(tmp_path, params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
                                   cv2.IMWRITE_JPEG_RST_INTERVAL, 2))
    assert data.count(b"\xff\xda") > 1 and b"\xff\xd0" in data   # several scans, restarts
    assert jpeg_end(data) == len(data)
    assert jpeg_end(data[:-2]) is None


def test_other_bad_files_named(tmp_path):
    assert image_problem(str(tmp_path / "missing.jpg")) == "missing file"
    assert image_problem(_write(tmp_path / "empty.jpg", b"")) == "empty file"
    assert "not a JPEG" in image_problem(_write(tmp_path / "text.jpg", b"hello world"))
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    assert image_problem(_write(tmp_path / "p.png", png)) is None
    assert image_problem(_write(tmp_path / "cut.png", png[:30])) is not None
    assert os.path.isfile(tmp_path / "cut.png")
