"""Image augmentation and test-time views as TensorFlow ops.

Every random op is *stateless*: it takes a ``seed`` tensor of shape [2], so
the same seed gives the same image eagerly and inside ``tf.data`` and a
resumed run sees the images it would have seen. Images are float32 in
[0, 255] until :func:`preprocess` maps them to the network's input range.

Training augmentation of Hermans et al. 2017 (Sec. 4.3): resize to 1 1/8 of
the input size, random crop to the input size, random horizontal flip.
Optional extras used by the other papers: random erasing (Zhong et al.
2020), colour jitter and random padding (pad then crop, fast-reid).

Test-time views (Hermans et al. 2017, supplement A): ``none`` (plain resize),
``center`` (resize to 1 1/8, centre crop), ``center_flip``, ``five`` (four
corners + centre) and ``five_flip`` (the five plus their mirror images).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from kreid_edge.preprocessing import CAFFE_MEAN_BGR, PREPROCESSING, TORCH_MEAN, TORCH_STD

PRE_CROP_SCALE = 1.125
TTA_MODES = ("none", "center", "center_flip", "five", "five_flip")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which training augmentations to apply (defaults: the triplet paper's)."""

    crop: bool = True             # resize to 1 1/8, random crop
    flip: bool = True
    erasing_prob: float = 0.0     # random erasing probability (0 = off)
    jitter: float = 0.0           # colour jitter strength (0 = off)
    padding: int = 0              # pad by this many pixels, then random crop back


def pre_crop_size(size: tuple[int, int]) -> tuple[int, int]:
    return int(round(size[0] * PRE_CROP_SCALE)), int(round(size[1] * PRE_CROP_SCALE))


def _seed(seed: tf.Tensor, i: int) -> tf.Tensor:
    """Derive the i-th independent seed from one [2] seed."""
    return tf.random.experimental.stateless_fold_in(seed, i)


def resize(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    return tf.image.resize(image, size, method="bilinear", antialias=False)


def random_resized_crop(image: tf.Tensor, size: tuple[int, int], seed: tf.Tensor) -> tf.Tensor:
    image = resize(image, pre_crop_size(size))
    return tf.image.stateless_random_crop(image, (size[0], size[1], 3), seed=seed)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.image.stateless_random_flip_left_right(image, seed=seed)


def random_padding(image: tf.Tensor, pad: int, seed: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, (shape[0], shape[1], 3), seed=seed)


def color_jitter(image: tf.Tensor, strength: float, seed: tf.Tensor) -> tf.Tensor:
    """Brightness, contrast, saturation and hue jitter; ``strength`` in [0, 1]."""
    x = image / 255.0
    x = tf.image.stateless_random_brightness(x, 0.4 * strength, _seed(seed, 0))
    x = tf.image.stateless_random_contrast(x, 1 - 0.4 * strength, 1 + 0.4 * strength,
                                           _seed(seed, 1))
    x = tf.image.stateless_random_saturation(x, 1 - 0.4 * strength, 1 + 0.4 * strength,
                                             _seed(seed, 2))
    x = tf.image.stateless_random_hue(x, 0.1 * strength, _seed(seed, 3))
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def random_erasing(image: tf.Tensor, prob: float, seed: tf.Tensor,
                   area: tuple[float, float] = (0.02, 0.4),
                   aspect: tuple[float, float] = (0.3, 3.3)) -> tf.Tensor:
    """Random erasing (Zhong et al.): with probability ``prob`` a rectangle of
    random area fraction and aspect ratio is filled with uniform noise."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    u = tf.random.stateless_uniform([4], _seed(seed, 0))
    target = (area[0] + (area[1] - area[0]) * u[0]) * h * w
    log_r = tf.math.log(aspect[0]) + (tf.math.log(aspect[1]) - tf.math.log(aspect[0])) * u[1]
    r = tf.exp(log_r)
    eh = tf.clip_by_value(tf.round(tf.sqrt(target * r)), 1.0, h)
    ew = tf.clip_by_value(tf.round(tf.sqrt(target / r)), 1.0, w)
    y0 = tf.floor(u[2] * (h - eh + 1))
    x0 = tf.floor(u[3] * (w - ew + 1))
    ys = tf.range(h)[:, None]
    xs = tf.range(w)[None, :]
    mask = (ys >= y0) & (ys < y0 + eh) & (xs >= x0) & (xs < x0 + ew)
    apply = tf.random.stateless_uniform([], _seed(seed, 1)) < prob
    mask = tf.logical_and(mask, apply)[..., None]
    noise = tf.random.stateless_uniform(tf.shape(image), _seed(seed, 2), 0.0, 255.0)
    return tf.where(mask, noise, image)


def augment(image: tf.Tensor, size: tuple[int, int], config: AugmentConfig,
            seed: tf.Tensor) -> tf.Tensor:
    """The full training augmentation; the output is (H, W, 3) float32 in [0, 255]."""
    image = tf.cast(image, tf.float32)
    if config.crop:
        image = random_resized_crop(image, size, _seed(seed, 10))
    else:
        image = resize(image, size)
    if config.padding:
        image = random_padding(image, config.padding, _seed(seed, 11))
    if config.flip:
        image = random_flip(image, _seed(seed, 12))
    if config.jitter:
        image = color_jitter(image, config.jitter, _seed(seed, 13))
    if config.erasing_prob:
        image = random_erasing(image, config.erasing_prob, _seed(seed, 14))
    return tf.ensure_shape(image, (size[0], size[1], 3))


def preprocess(image: tf.Tensor, mode: str) -> tf.Tensor:
    """Map [0, 255] RGB to the network's input range (the modes and constants of
    :mod:`kreid_edge.preprocessing`, which does the same in NumPy on the device)."""
    image = tf.cast(image, tf.float32)
    if mode == "scale":
        return image / 255.0
    if mode == "imagenet":
        return image[..., ::-1] - tf.constant(CAFFE_MEAN_BGR)
    if mode == "torch":
        return (image / 255.0 - tf.constant(TORCH_MEAN)) / tf.constant(TORCH_STD)
    if mode == "none":
        return image
    raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {mode!r}")


def tta_views(image: tf.Tensor, size: tuple[int, int], mode: str) -> tf.Tensor:
    """Deterministic test-time views, stacked as (V, H, W, 3) float32."""
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {mode!r}")
    image = tf.cast(image, tf.float32)
    h, w = size
    if mode == "none":
        views = [resize(image, size)]
    else:
        big = resize(image, pre_crop_size(size))
        ph, pw = pre_crop_size(size)
        dy, dx = (ph - h) // 2, (pw - w) // 2
        center = big[dy:dy + h, dx:dx + w]
        if mode.startswith("center"):
            views = [center]
        else:
            views = [center, big[:h, :w], big[:h, pw - w:], big[ph - h:, :w],
                     big[ph - h:, pw - w:]]
    if mode.endswith("flip"):
        views += [v[:, ::-1] for v in views]
    return tf.stack(views)


def num_views(mode: str) -> int:
    return {"none": 1, "center": 1, "center_flip": 2, "five": 5, "five_flip": 10}[mode]
