"""tf.data pipelines: records + PK index batches -> decoded, augmented image batches.

Training: the :class:`PKSampler` gives the indices of step ``t`` (a pure
function of seed and step), files are read and decoded (JPEG/PNG/BMP) in a
parallel, order-preserving map, augmented with stateless seeds derived from
(seed, element index), batched to P*K and prefetched. Evaluation: every
record once, in order, as the chosen test-time views.

Bad files: a missing file or one that is not a JPEG/PNG/BMP/GIF stops the
pipeline with an error that names it. Other decoder failures (a truncated
JPEG) raise inside TensorFlow without a name; :func:`iterate` catches them and
names every unreadable file. With ``skip_corrupt=True`` all files are checked
up front and unreadable ones are dropped and counted instead.
"""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf

from kreid.data import augment as aug
from kreid.data.records import Record, attribute_matrix
from kreid.data.sampler import BatchSampler, PKSampler
from kreid.errors import EmptySplitError, ImageReadError
from kreid_edge.images import image_problem

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE


def read_image(path: tf.Tensor) -> tf.Tensor:
    """Read and decode one image to uint8 (H, W, 3), failing with the path for non-images."""
    data = tf.io.read_file(path)
    head = tf.strings.substr(data, 0, 4)
    known = tf.reduce_any([
        tf.strings.substr(head, 0, 2) == b"\xff\xd8",
        head == b"\x89PNG",
        tf.strings.substr(head, 0, 2) == b"BM",
        tf.strings.substr(head, 0, 3) == b"GIF",
    ])
    is_jpeg = tf.strings.substr(head, 0, 2) == b"\xff\xd8"
    with tf.control_dependencies([tf.debugging.Assert(
            known, ["not a JPEG/PNG/BMP/GIF image (empty or corrupt file):", path])]):
        # JPEG with the accurate integer IDCT: bit-identical to OpenCV's decoder, which
        # the TensorFlow-free edge runtime uses (TF's default fast IDCT differs by up to 20).
        image = tf.cond(
            is_jpeg,
            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
    return tf.ensure_shape(image, (None, None, 3))


def check_image(path: str) -> str | None:
    """None if ``path`` decodes to an image, else the reason it does not.

    The one check shared with the device runtime (:func:`kreid_edge.images.image_problem`):
    the format comes from the file's bytes, and a JPEG must reach its end-of-image
    marker (TensorFlow refuses truncated JPEGs; trailing bytes after it are fine).
    """
    return image_problem(path)


def find_bad_images(paths: Sequence[str], workers: int = 4) -> dict[str, str]:
    """Check every file in parallel; returns {path: reason} for unreadable ones."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(check_image, paths, chunksize=64))
    return {p: r for p, r in zip(paths, reasons) if r is not None}


def drop_bad_images(records: Sequence[Record]) -> tuple[list[Record], dict[str, str]]:
    bad = find_bad_images([r.path for r in records])
    if bad:
        log.warning("skipping %d unreadable images, e.g. %s (%s)", len(bad),
                    next(iter(bad)), next(iter(bad.values())))
    return [r for r in records if r.path not in bad], bad


# what TensorFlow raises when a file cannot be read or decoded inside a pipeline
READ_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.DataLossError)


def raise_unreadable(records: Sequence[Record], exc: Exception,
                     remedy: str = "pass skip_corrupt=True") -> None:
    """Re-raise a pipeline error as :class:`ImageReadError` naming every unreadable file;
    returns (so the caller re-raises ``exc``) when every file reads fine."""
    bad = find_bad_images([r.path for r in records])
    if not bad:
        return
    listed = "; ".join(f"{p}: {r}" for p, r in list(bad.items())[:10])
    raise ImageReadError(f"{len(bad)} unreadable image(s): {listed}. Fix or remove them, or "
                         f"{remedy} to drop and count them") from exc


def iterate(dataset: tf.data.Dataset, records: Sequence[Record]) -> Iterator:
    """Iterate ``dataset``; a decode failure is re-raised as ImageReadError naming the files."""
    iterator = iter(dataset)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except READ_ERRORS as exc:
            raise_unreadable(records, exc)
            raise


def _columns(records: Sequence[Record], split: str):
    if not records:
        raise EmptySplitError(f"the {split} split is empty: nothing to feed the pipeline")
    paths = tf.constant([r.path for r in records])
    labels = tf.constant([r.label if r.label >= 0 else r.pid for r in records], tf.int64)
    return paths, labels


def train_dataset(records: Sequence[Record], p: int = 32, k: int = 4,
                  image_size: tuple[int, int] = (128, 64), seed: int = 0, start_step: int = 0,
                  augment: aug.AugmentConfig | None = None, preprocessing: str = "scale",
                  sampler: BatchSampler | None = None, as_dict: bool = False,
                  skip_corrupt: bool = False, num_steps: int | None = None) -> tf.data.Dataset:
    """Infinite dataset of (images [B, H, W, 3] float32, labels [B] int64) batches, or
    ``num_steps`` of them.

    Batch ``t`` of the stream is batch ``start_step + t`` of ``sampler`` (any
    :class:`~kreid.data.sampler.BatchSampler`; default: a PK sampler of P
    identities x K images). Labels are the records' contiguous training
    labels. ``as_dict=True`` yields dicts with ``images``, ``labels``,
    ``positive_index`` [B] (the sampler's chosen positives, -1 elsewhere) and,
    when the records have attributes, ``attributes`` [B, M].
    ``skip_corrupt``: drop unreadable images first (only with the default sampler,
    whose indices refer to the remaining records).

    With ``num_steps`` the sampler's index batches are drawn up front (70-500 us a
    step) and the stream holds no Python: without it they come from a Python
    generator (``from_generator``), and destroying such an iterator at the end of
    a training stage sometimes stalled for 50-57 s (TensorFlow cancels the
    generator's in-flight Python calls; measured on the demo, BENCHMARKS.md).
    The trainer always knows how many steps a stream must give.
    """
    if skip_corrupt:
        if sampler is not None:
            raise ValueError("skip_corrupt drops records: build the sampler on the records "
                             "pipeline.drop_bad_images() keeps instead")
        records, _ = drop_bad_images(records)
    records = list(records)
    paths, labels = _columns(records, "train")
    if sampler is None:
        sampler = PKSampler([r.label if r.label >= 0 else r.pid for r in records], p, k,
                            seed=seed)
    batch = int(sampler.batch_size)
    attributes = attribute_matrix(records)
    attrs = tf.constant(attributes) if as_dict and attributes.shape[1] else None
    config = augment or aug.AugmentConfig()
    size = tuple(image_size)

    def indices():
        step = start_step
        while True:
            positives = sampler.positives_at(step) if sampler.gives_positives else \
                np.full(batch, -1, np.int64)
            yield sampler.batch_at(step), positives
            step += 1

    def load(index, idx):
        seed_pair = tf.stack([tf.cast(seed, tf.int64), index])
        image = read_image(tf.gather(paths, idx))
        image = aug.augment(image, size, config, seed_pair)
        return aug.preprocess(image, preprocessing), idx

    if num_steps is not None:
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        stream = indices()
        drawn = [next(stream) for _ in range(int(num_steps))]
        index_batches = tf.data.Dataset.from_tensor_slices(
            (np.stack([d[0] for d in drawn]).astype(np.int64),
             np.stack([d[1] for d in drawn]).astype(np.int64)))
    else:
        spec = (tf.TensorSpec([batch], tf.int64), tf.TensorSpec([batch], tf.int64))
        index_batches = tf.data.Dataset.from_generator(indices, output_signature=spec)
    images = index_batches.map(lambda idx, pos: idx).unbatch()
    images = tf.data.Dataset.zip(tf.data.Dataset.range(start_step * batch, 2 ** 62), images)
    images = images.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    images = images.batch(batch, drop_remainder=True)

    def assemble(loaded, positions):
        image_batch, idx = loaded
        if not as_dict:
            return image_batch, tf.gather(labels, idx)
        out = {"images": image_batch, "labels": tf.gather(labels, idx),
               "positive_index": positions[1]}
        if attrs is not None:
            out["attributes"] = tf.gather(attrs, idx)
        return out

    ds = tf.data.Dataset.zip(images, index_batches)
    return ds.map(assemble).prefetch(AUTOTUNE)


def eval_dataset(records: Sequence[Record], image_size: tuple[int, int], tta: str = "none",
                 preprocessing: str = "scale", batch_size: int = 64,
                 num_parallel_calls: int = AUTOTUNE) -> tf.data.Dataset:
    """Every record once, in order: batches of views [B, V, H, W, 3] float32."""
    paths, _ = _columns(records, "evaluation")
    size = tuple(image_size)

    def load(path):
        return aug.preprocess(aug.tta_views(read_image(path), size, tta), preprocessing)

    ds = tf.data.Dataset.from_tensor_slices(paths)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)
