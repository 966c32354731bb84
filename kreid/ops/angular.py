"""Additive angular margin logits (Sabri et al. Eq. 2): the one home of the computation
that the classifier heads (:mod:`kreid.models.heads`) and the losses
(:mod:`kreid.losses.margin_softmax`) share. Pure TensorFlow, no Keras layers.

The target logit becomes ``s * cos(theta_y + m)``; ``m = 0`` is the normalised
softmax ("AM0"). Where ``theta_y + m`` would pass pi the target logit continues
as ``s * (cos theta_y - m sin m)`` so that it keeps falling with theta (the
usual ArcFace guard); cosines are clamped away from +-1 so that sin theta and
its gradient stay finite.
"""

from __future__ import annotations

import math

import tensorflow as tf

_CLAMP = 1.0 - 1e-7


def angular_margin_logits(cos: tf.Tensor, labels: tf.Tensor | None, scale: float,
                          margin: float) -> tf.Tensor:
    """Logits ``s * cos(theta + m)`` for the target class, ``s * cos(theta)`` otherwise.

    ``cos`` is [..., C]; ``labels`` [...] integer classes, or None (inference:
    no margin). Labels < 0 (missing) get no margin.
    """
    cos = tf.clip_by_value(cos, -_CLAMP, _CLAMP)
    if labels is None or margin == 0:
        return scale * cos
    sin = tf.sqrt(1.0 - tf.square(cos))
    phi = cos * math.cos(margin) - sin * math.sin(margin)
    threshold, fallback = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin
    phi = tf.where(cos > threshold, phi, cos - fallback)
    one_hot = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(cos)[-1], dtype=cos.dtype)
    return scale * (one_hot * phi + (1.0 - one_hot) * cos)
