"""tf.data pipeline and augmentation ops: shapes, ranges, determinism, bad files."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from kreid.data import augment as aug
from kreid.data import datasets, pipeline
from kreid.data.records import Record
from kreid.errors import EmptySplitError, ImageReadError
from tests.conftest import write_image


@pytest.fixture(scope="module")
def synth(synthetic_root):
    return datasets.load("synthetic", synthetic_root)


def test_train_batches(synth):
    ds = pipeline.train_dataset(synth.train, p=4, k=3, image_size=(64, 32), seed=0)
    images, labels = next(iter(ds))
    assert images.shape == (12, 64, 32, 3) and images.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    labels = labels.numpy().reshape(4, 3)
    assert (labels == labels[:, :1]).all() and len(set(labels[:, 0])) == 4


def test_resume_gives_the_same_batches(synth):
    full = list(pipeline.train_dataset(synth.train, 3, 2, (32, 16), seed=7).take(3))
    resumed = next(iter(pipeline.train_dataset(synth.train, 3, 2, (32, 16), seed=7,
                                               start_step=2)))
    np.testing.assert_array_equal(full[2][0].numpy(), resumed[0].numpy())
    other = next(iter(pipeline.train_dataset(synth.train, 3, 2, (32, 16), seed=8,
                                             start_step=2)))
    assert not np.array_equal(full[2][1].numpy(), other[1].numpy()) or \
        not np.array_equal(full[2][0].numpy(), other[0].numpy())


def test_finite_stream_equals_the_generator(synth):
    """num_steps draws the same batches up front (no Python in the stream), then ends."""
    gen = list(pipeline.train_dataset(synth.train, 3, 2, (32, 16), seed=7, start_step=4,
                                      as_dict=True).take(3))
    fin = list(pipeline.train_dataset(synth.train, 3, 2, (32, 16), seed=7, start_step=4,
                                      as_dict=True, num_steps=3))
    assert len(fin) == 3
    for a, b in zip(gen, fin):
        for key in ("images", "labels", "positive_index"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    with pytest.raises(ValueError, match="num_steps"):
        pipeline.train_dataset(synth.train, 3, 2, (32, 16), num_steps=0)


def test_preprocessing_modes():
    x = tf.fill((2, 2, 3), 255.0)
    assert float(aug.preprocess(x, "scale")[0, 0, 0]) == 1.0
    np.testing.assert_allclose(aug.preprocess(x, "imagenet")[0, 0].numpy(),
                               [255 - 103.939, 255 - 116.779, 255 - 123.68], rtol=1e-6)
    with pytest.raises(ValueError, match="preprocessing"):
        aug.preprocess(x, "bogus")


@pytest.mark.parametrize("mode,views", [("none", 1), ("center", 1), ("center_flip", 2),
                                        ("five", 5), ("five_flip", 10)])
def test_tta_views(mode, views):
    image = tf.random.uniform((90, 50, 3), 0, 255, seed=1)
    out = aug.tta_views(image, (64, 32), mode)
    assert out.shape == (views, 64, 32, 3) and aug.num_views(mode) == views
    if mode.endswith("flip"):
        np.testing.assert_allclose(out[views // 2].numpy(), out[0].numpy()[:, ::-1])
    if mode == "five":  # corner crops of the 1 1/8 resize
        big = aug.resize(image, aug.pre_crop_size((64, 32)))
        np.testing.assert_allclose(out[1].numpy(), big[:64, :32].numpy())
        np.testing.assert_allclose(out[4].numpy(), big[-64:, -32:].numpy())


def test_augment_ops_eager_and_in_tf_data_agree():
    image = tf.random.uniform((80, 40, 3), 0, 255, seed=2)
    config = aug.AugmentConfig(erasing_prob=1.0, jitter=0.5, padding=4)
    seed = tf.constant([3, 4], tf.int64)
    eager = aug.augment(image, (64, 32), config, seed)
    graph = next(iter(tf.data.Dataset.from_tensors((image, seed)).map(
        lambda i, s: aug.augment(i, (64, 32), config, s))))
    np.testing.assert_allclose(eager.numpy(), graph.numpy(), atol=1e-4)
    assert eager.shape == (64, 32, 3)
    again = aug.augment(image, (64, 32), config, tf.constant([3, 5], tf.int64))
    assert not np.allclose(eager.numpy(), again.numpy())


def test_random_erasing_changes_a_rectangle():
    image = tf.zeros((40, 20, 3))
    erased = aug.random_erasing(image, 1.0, tf.constant([1, 2], tf.int64)).numpy()
    rows, cols = np.nonzero(erased.sum(-1))
    assert len(rows) > 0
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert len(rows) >= 0.9 * box                    # a filled rectangle, not scattered pixels
    kept = aug.random_erasing(image, 0.0, tf.constant([1, 2], tf.int64)).numpy()
    assert not kept.any()


def test_eval_dataset_order_and_views(synth):
    recs = synth.query[:5]
    batches = list(pipeline.eval_dataset(recs, (64, 32), tta="center_flip", batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert batches[0].shape[1:] == (2, 64, 32, 3)


def _bad_records(tmp_path, synth, kind):
    good = str(tmp_path / "good.jpg")
    shutil.copy(synth.train[0].path, good)
    bad = str(tmp_path / f"{kind}.jpg")
    if kind == "truncated":
        data = open(good, "rb").read()
        open(bad, "wb").write(data[: len(data) // 3])
    elif kind == "garbage":
        open(bad, "wb").write(b"not an image at all")
    elif kind == "empty":
        open(bad, "wb").close()
    return [Record(good, 1, 0, label=0), Record(bad, 2, 0, label=1), Record(good, 2, 1, label=1),
            Record(good, 1, 1, label=0)]


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "missing"])
def test_bad_image_is_named(tmp_path, synth, kind):
    records = _bad_records(tmp_path, synth, kind)
    ds = pipeline.eval_dataset(records, (32, 16), batch_size=2)
    with pytest.raises(ImageReadError, match=f"{kind}.jpg"):
        for _ in pipeline.iterate(ds, records):
            pass


def test_skip_corrupt_drops_and_counts(tmp_path, synth):
    records = _bad_records(tmp_path, synth, "truncated")
    kept, bad = pipeline.drop_bad_images(records)
    assert len(kept) == 3 and list(bad) == [records[1].path]
    ds = pipeline.train_dataset(records, p=2, k=2, image_size=(32, 16), skip_corrupt=True)
    images, _ = next(iter(ds))
    assert images.shape == (4, 32, 16, 3)


def test_png_and_bmp_decode(tmp_path):
    recs = [Record(write_image(str(tmp_path / f"x.{ext}"), seed=i), i, 0, label=i)
            for i, ext in enumerate(("png", "bmp", "jpg"))]
    out = next(iter(pipeline.eval_dataset(recs, (24, 12), preprocessing="none")))
    assert out.shape == (3, 1, 24, 12, 3)
    src = tf.io.decode_image(open(recs[1].path, "rb").read(), channels=3)
    np.testing.assert_allclose(out[1, 0].numpy(), tf.cast(src, tf.float32).numpy())


def test_empty_split_refused():
    with pytest.raises(EmptySplitError, match="train"):
        pipeline.train_dataset([], 2, 2, (32, 16))
