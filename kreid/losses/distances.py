"""Pairwise distances between embedding sets, by matrix products (no B x B x D tensor).

The Euclidean distance is *not* squared (Hermans et al. 2017, Sec. 3.6). Its
square root is guarded: where the squared distance is (numerically) zero the
distance is exactly zero and its gradient is zero instead of infinite, so
duplicate embeddings train without NaN.
"""

from __future__ import annotations

import tensorflow as tf

METRICS = ("euclidean", "sqeuclidean", "cityblock", "cosine")
_EPS = 1e-12


def _sqeuclidean(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    a2 = tf.reduce_sum(tf.square(a), axis=1, keepdims=True)
    b2 = tf.reduce_sum(tf.square(b), axis=1, keepdims=True)
    d2 = a2 - 2.0 * tf.matmul(a, b, transpose_b=True) + tf.transpose(b2)
    return tf.maximum(d2, 0.0)


def safe_sqrt(x: tf.Tensor) -> tf.Tensor:
    """sqrt with value 0 and gradient 0 where x <= 1e-12 (instead of an infinite gradient)."""
    positive = x > _EPS
    return tf.where(positive, tf.sqrt(tf.where(positive, x, tf.ones_like(x))),
                    tf.zeros_like(x))


def pairwise_distance(a: tf.Tensor, b: tf.Tensor | None = None,
                      metric: str = "euclidean") -> tf.Tensor:
    """Distances between the rows of ``a`` [N, D] and ``b`` [M, D] (``b`` = ``a`` if None).

    Metrics: ``euclidean`` (not squared), ``sqeuclidean``, ``cityblock`` (L1)
    and ``cosine`` (1 - cosine similarity). With ``b`` None the diagonal is
    exactly zero.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    same = b is None
    a = tf.convert_to_tensor(a)
    b = a if same else tf.convert_to_tensor(b, dtype=a.dtype)
    if metric == "cityblock":
        d = tf.reduce_sum(tf.abs(a[:, None, :] - b[None, :, :]), axis=-1)
    elif metric == "cosine":
        an = tf.math.l2_normalize(a, axis=1)
        bn = tf.math.l2_normalize(b, axis=1)
        d = 1.0 - tf.matmul(an, bn, transpose_b=True)
    else:
        # Translation leaves distances (and their gradients) unchanged but removes a
        # common offset that would cost float32 precision in |a|^2 + |b|^2 - 2ab.
        c = tf.reduce_mean(a, axis=0, keepdims=True)
        d = _sqeuclidean(a - c, b - c)
        if same:
            d = tf.linalg.set_diag(d, tf.zeros(tf.shape(d)[:1], d.dtype))
        if metric == "euclidean":
            d = safe_sqrt(d)
    if same and metric in ("cityblock", "cosine"):
        d = tf.linalg.set_diag(d, tf.zeros(tf.shape(d)[:1], d.dtype))
    return d
