"""Additive angular margin softmax and the joint losses of Sabri, Randhawa, Doretto.

``cos`` are cosine similarities between L2-normalised features and
L2-normalised class weights (see ``kreid.models.heads.AngularMarginHead``).
The target logit becomes ``s * cos(theta_y + m)`` (Eq. 2); ``m = 0`` is the
normalised softmax ("AM0"). Where ``theta_y + m`` would pass pi the target
logit continues as ``s * (cos theta_y - m sin m)`` so that it keeps falling
with theta (the usual ArcFace guard); cosines are clamped away from +-1 so
that sin theta and its gradient stay finite.
"""

from __future__ import annotations

import tensorflow as tf

from kreid.losses.triplet_family import batch_hard
from kreid.ops.angular import angular_margin_logits  # noqa: F401  (one home, re-exported)

def softmax_cross_entropy(logits: tf.Tensor, labels: tf.Tensor,
                          label_smoothing: float = 0.0) -> tf.Tensor:
    """Mean cross-entropy over entries with label >= 0 (0 if none)."""
    labels = tf.cast(labels, tf.int32)
    valid = labels >= 0
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    num_classes = tf.shape(logits)[-1]
    target = tf.one_hot(safe, num_classes, dtype=logits.dtype)
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / tf.cast(num_classes,
                                                                             logits.dtype)
    ce = -tf.reduce_sum(target * tf.nn.log_softmax(logits), axis=-1)
    valid = tf.cast(valid, ce.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(ce * valid), tf.reduce_sum(valid))


def am_softmax(cos: tf.Tensor, labels: tf.Tensor, scale: float = 16.0,
               margin: float = 0.0) -> tf.Tensor:
    """L_AM, Eq. (2) of Sabri et al.: softmax cross-entropy on margin logits."""
    return softmax_cross_entropy(angular_margin_logits(cos, labels, scale, margin), labels)


def attribute_loss(attr_logits: tf.Tensor, attr_labels: tf.Tensor) -> tf.Tensor:
    """L_Attr, Eq. (3) of Sabri et al.: ``-(1/N) sum_i sum_{k=1..M} log p(a_k,i)`` - the
    2-way cross-entropies *summed* over the M attributes, averaged over the N samples.

    ``attr_logits`` [B, M, 2] (margin already applied by the head),
    ``attr_labels`` [B, M] in {0, 1}; -1 marks a missing label, which adds
    nothing to the sum (the paper's attributes are complete; N stays the batch size).
    """
    labels = tf.cast(attr_labels, tf.int32)
    valid = labels >= 0
    target = tf.one_hot(tf.where(valid, labels, 0), 2, dtype=attr_logits.dtype)
    ce = -tf.reduce_sum(target * tf.nn.log_softmax(attr_logits), axis=-1)       # [B, M]
    ce = ce * tf.cast(valid, ce.dtype)
    return tf.reduce_sum(ce) / tf.cast(tf.shape(ce)[0], ce.dtype)


def am_bh(logits: tf.Tensor, embeddings: tf.Tensor, labels: tf.Tensor, gamma: float,
          bh_margin="soft", bh_features: str = "raw", metric: str = "euclidean",
          attr_logits: tf.Tensor | None = None, attr_labels: tf.Tensor | None = None,
          lam: float = 0.0) -> tf.Tensor:
    """Joint losses: L_AMBH = L_AM + gamma * L_BH (Eq. 6) and, with attributes,
    L_AMBH_Attr = L_AM + lambda * L_Attr + gamma * L_BH (Eq. 7).

    ``logits`` are the identity head's margin logits. The triplet term is on the
    un-normalised embedding (``bh_features='raw'``) or on the L2-normalised one
    (``'normalized'``, the AM0BH1 variant of Table 3); ``bh_margin='soft'``
    gives the softplus variant (AM0BHsp).
    """
    if bh_features not in ("raw", "normalized"):
        raise ValueError(f"bh_features must be 'raw' or 'normalized', got {bh_features!r}")
    feats = tf.math.l2_normalize(embeddings, axis=1) if bh_features == "normalized" \
        else embeddings
    loss = softmax_cross_entropy(logits, labels) + \
        gamma * batch_hard(feats, labels, margin=bh_margin, metric=metric)
    if attr_logits is not None:
        if attr_labels is None:
            raise ValueError("attr_logits given without attr_labels")
        loss += lam * attribute_loss(attr_logits, attr_labels)
    return loss
