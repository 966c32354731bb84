"""The unified view of Zhang et al., *Rethinking Classification Loss Designs*.

* :func:`ntuplet` - the N-tuplet loss (Eq. 6): for each sampled tuplet
  (anchor, positive, N-1 negatives of distinct identities),
  ``-log softmax(sim / tau)`` at the positive.
* :func:`point_to_set` - a triplet between a point and sets: the anchor's
  distance to its own identity's set versus the nearest other set.
* :func:`prototypical_ntuplet` - N-tuplet against the class prototypes of the
  batch (means; the anchor's own prototype leaves the anchor out).
  With a mapping subnet ``phi`` and a learnable temperature it is the meta
  prototypical N-tuplet loss (Eq. 7-10; see ``kreid.training.terms.MetaPrototypeHead``).
* classification on a BN-neck feature: ``margin_softmax.softmax_cross_entropy``
  on the logits of ``kreid.models.heads.BNNeckClassifier``.

Similarities: ``cosine`` or ``euclidean`` (negative distance).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from kreid.losses.distances import pairwise_distance, safe_sqrt
from kreid.losses.triplet_family import _average, _margin, _rowwise

SIMILARITIES = ("cosine", "euclidean")


def similarity(a: tf.Tensor, b: tf.Tensor, kind: str = "cosine") -> tf.Tensor:
    if kind == "cosine":
        return tf.matmul(tf.math.l2_normalize(a, 1), tf.math.l2_normalize(b, 1),
                         transpose_b=True)
    if kind == "euclidean":
        return -pairwise_distance(a, b, "euclidean")
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {kind!r}")


def ntuplet(embeddings, tuplets, temperature: float = 0.1,
            similarity_kind: str = "cosine") -> tf.Tensor:
    """N-tuplet loss on index tuplets [M, N+1] = (anchor, positive, negatives...)."""
    embeddings = tf.convert_to_tensor(embeddings)
    tuplets = tf.convert_to_tensor(tuplets, tf.int32)
    anchors = tf.gather(embeddings, tuplets[:, 0])                 # [M, D]
    others = tf.gather(embeddings, tuplets[:, 1:])                  # [M, N, D]
    if similarity_kind == "cosine":
        sims = tf.einsum("md,mnd->mn", tf.math.l2_normalize(anchors, -1),
                         tf.math.l2_normalize(others, -1))
    elif similarity_kind == "euclidean":
        diff = others - anchors[:, None, :]
        d2 = tf.reduce_sum(tf.square(diff), -1)
        sims = -safe_sqrt(d2)
    else:
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity_kind!r}")
    logits = sims / temperature
    return tf.reduce_mean(-tf.nn.log_softmax(logits, axis=-1)[:, 0])


def _class_sums(embeddings: tf.Tensor, labels: tf.Tensor):
    classes, index = tf.unique(tf.reshape(labels, [-1]))
    one_hot = tf.one_hot(index, tf.shape(classes)[0], dtype=embeddings.dtype)   # [B, C]
    sums = tf.matmul(one_hot, embeddings, transpose_a=True)                     # [C, D]
    counts = tf.reduce_sum(one_hot, axis=0)                                     # [C]
    return one_hot, sums, counts


def prototypes(embeddings: tf.Tensor, labels: tf.Tensor):
    """Class prototypes of the batch and each anchor's leave-one-out own prototype.

    Returns (one_hot [B, C], class means [C, D], own prototypes [B, D], valid [B])
    where valid marks anchors whose identity has another image in the batch.
    """
    one_hot, sums, counts = _class_sums(embeddings, labels)
    means = sums / tf.maximum(counts, 1.0)[:, None]
    own_count = tf.matmul(one_hot, counts[:, None])[:, 0] - 1.0
    own = (tf.matmul(one_hot, sums) - embeddings) / tf.maximum(own_count, 1.0)[:, None]
    return one_hot, means, own, own_count > 0


def prototypical_ntuplet(embeddings, labels, temperature=0.1, similarity_kind: str = "cosine",
                         mapping: Callable[[tf.Tensor], tf.Tensor] | None = None) -> tf.Tensor:
    """Prototypical N-tuplet loss: softmax over the batch's class prototypes.

    The anchor's own class uses the leave-one-out prototype, the others the
    class means. ``mapping`` (the meta subnet phi) maps prototypes before the
    similarity; ``temperature`` may be a tensor or variable (learnable tau).
    Anchors whose identity has a single image in the batch are left out.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    one_hot, means, own, valid = prototypes(embeddings, labels)
    if mapping is not None:
        means, own = mapping(means), mapping(own)
    sims = similarity(embeddings, means, similarity_kind)                       # [B, C]
    if similarity_kind == "cosine":
        own_sim = tf.reduce_sum(tf.math.l2_normalize(embeddings, 1) *
                                tf.math.l2_normalize(own, 1), 1)
    else:
        own_sim = -safe_sqrt(tf.reduce_sum(tf.square(embeddings - own), 1))
    sims = one_hot * own_sim[:, None] + (1.0 - one_hot) * sims
    logits = sims / temperature
    ce = -tf.reduce_sum(one_hot * tf.nn.log_softmax(logits, axis=-1), axis=-1)
    return _average(ce, valid & (tf.shape(one_hot)[1] > 1), nonzero_average=False)


def point_to_set(embeddings, labels, margin="soft", metric: str = "euclidean",
                 set_distance: str = "prototype", nonzero_average: bool = False) -> tf.Tensor:
    """Point-to-set triplet: ``f(m + D(a, S_y \\ a) - min_{c != y} D(a, S_c))``.

    ``set_distance='prototype'``: distance to the set's mean embedding;
    ``'mean'``: mean of the distances to the set's members.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    m, outer = _margin(margin)
    one_hot, means, own, valid = prototypes(embeddings, labels)
    if set_distance == "prototype":
        d_sets = pairwise_distance(embeddings, means, metric)                   # [B, C]
        d_own = _rowwise(embeddings, own, metric)
    elif set_distance == "mean":
        d = pairwise_distance(embeddings, metric=metric)                        # [B, B]
        sums = tf.matmul(d, one_hot)                                            # [B, C]
        counts = tf.reduce_sum(one_hot, 0)[None, :]
        d_sets = sums / tf.maximum(counts, 1.0)
        own_count = tf.reduce_sum(one_hot * counts, 1) - 1.0
        d_own = tf.reduce_sum(one_hot * sums, 1) / tf.maximum(own_count, 1.0)
    else:
        raise ValueError(f"set_distance must be 'prototype' or 'mean', got {set_distance!r}")
    d_neg = tf.reduce_min(tf.where(one_hot > 0, 1e9, d_sets), axis=1)
    valid = valid & (tf.shape(one_hot)[1] > 1)
    terms = outer(m + d_own - tf.where(valid, d_neg, tf.zeros_like(d_neg)))
    return _average(terms, valid, nonzero_average)
