"""The unified view of Zhang et al., *Rethinking Classification Loss Designs*.

* :func:`ntuplet` - the N-tuplet loss (Eq. 6): for each sampled tuplet
  (anchor, positive, N-1 negatives of distinct identities),
  ``-log softmax(sim / tau)`` at the positive.
* :func:`triplet_unified` - the soft-margin triplet in the unified form with a
  temperature (the paper's "Tri."), over every triplet of the batch or batch hard;
* :func:`point_to_set_unified` - the point-to-set triplet in the unified
  (two-class softmax) form with prototypes as reference nodes;
  :func:`point_to_set` the distance/margin form.
* :func:`prototypical_ntuplet` - N-tuplet against the class prototypes of the
  batch (class means over all K samples, as the paper; leave-one-out optional).
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


def ntuplet(embeddings, tuplets, temperature=0.1, similarity_kind: str = "cosine") -> tf.Tensor:
    """N-tuplet loss (Zhang et al. Eq. 6) on index tuplets [M, N+1] = (anchor, positive,
    N-1 negatives): ``-log softmax(S / tau)`` at the positive.

    The B x B similarity matrix is computed once and the tuplets gather scalars
    from it, so the paper's M = T tuplets (11,520 for P=16, K=4) cost no more
    memory than a handful. ``temperature`` may be a tensor (learnable tau).
    """
    embeddings = tf.convert_to_tensor(embeddings)
    tuplets = tf.convert_to_tensor(tuplets, tf.int32)
    sims = similarity(embeddings, embeddings, similarity_kind)                  # [B, B]
    anchors = tf.broadcast_to(tuplets[:, :1], tf.shape(tuplets[:, 1:]))
    logits = tf.gather_nd(sims, tf.stack([anchors, tuplets[:, 1:]], -1)) / temperature
    return tf.reduce_mean(-tf.nn.log_softmax(logits, axis=-1)[:, 0])


def _class_sums(embeddings: tf.Tensor, labels: tf.Tensor):
    classes, index = tf.unique(tf.reshape(labels, [-1]))
    one_hot = tf.one_hot(index, tf.shape(classes)[0], dtype=embeddings.dtype)   # [B, C]
    sums = tf.matmul(one_hot, embeddings, transpose_a=True)                     # [C, D]
    counts = tf.reduce_sum(one_hot, axis=0)                                     # [C]
    return one_hot, sums, counts


def prototypes(embeddings: tf.Tensor, labels: tf.Tensor, leave_one_out: bool = False):
    """Class prototypes of the batch and each anchor's own prototype.

    Returns (one_hot [B, C], class means [C, D], own prototypes [B, D], valid [B]).
    ``leave_one_out=False`` (the paper: "averaging ... sum_{j=1}^K", Eq. 10, and
    "the average results over all instances of the same class" for P2S): the
    own prototype is the class mean, anchor included; every anchor is valid.
    ``True``: the anchor is left out of its own prototype, and anchors whose
    identity has no other image in the batch are not valid.
    """
    one_hot, sums, counts = _class_sums(embeddings, labels)
    means = sums / tf.maximum(counts, 1.0)[:, None]
    if not leave_one_out:
        return one_hot, means, tf.matmul(one_hot, means), tf.ones_like(one_hot[:, 0], tf.bool)
    own_count = tf.matmul(one_hot, counts[:, None])[:, 0] - 1.0
    own = (tf.matmul(one_hot, sums) - embeddings) / tf.maximum(own_count, 1.0)[:, None]
    return one_hot, means, own, own_count > 0


def _row_similarity(a: tf.Tensor, b: tf.Tensor, kind: str) -> tf.Tensor:
    if kind == "cosine":
        return tf.reduce_sum(tf.math.l2_normalize(a, 1) * tf.math.l2_normalize(b, 1), 1)
    return -safe_sqrt(tf.reduce_sum(tf.square(a - b), 1))


def prototypical_ntuplet(embeddings, labels, temperature=0.1, similarity_kind: str = "cosine",
                         mapping: Callable[[tf.Tensor], tf.Tensor] | None = None,
                         leave_one_out: bool = False) -> tf.Tensor:
    """Prototypical N-tuplet loss (PN-tuplet; with ``mapping`` the meta prototypical
    MPN-tuplet loss, Eq. 10): softmax over the batch's class prototypes.

    With ``mapping`` (the meta learner phi) every *sample* is mapped first and
    the prototypes average the mapped features: "we build its prototype
    reference node by averaging their mapped features as phi_c = 1/K sum_j
    phi(x_{c,j})" (Eq. 10); the anchor x_a itself is compared unmapped (Eq. 8).
    ``temperature`` may be a tensor or variable (learnable tau).
    """
    embeddings = tf.convert_to_tensor(embeddings)
    refs = embeddings if mapping is None else mapping(embeddings)
    one_hot, means, own, valid = prototypes(refs, labels, leave_one_out)
    sims = similarity(embeddings, means, similarity_kind)                       # [B, C]
    own_sim = _row_similarity(embeddings, own, similarity_kind)
    sims = one_hot * own_sim[:, None] + (1.0 - one_hot) * sims
    logits = sims / temperature
    ce = -tf.reduce_sum(one_hot * tf.nn.log_softmax(logits, axis=-1), axis=-1)
    return _average(ce, valid & (tf.shape(one_hot)[1] > 1), nonzero_average=False)


def point_to_set_unified(embeddings, labels, temperature=0.1, similarity_kind: str = "cosine",
                         leave_one_out: bool = False) -> tf.Tensor:
    """Point-to-set triplet in the unified form (Zhang et al. Sec. 3.1, Eq. 5 with
    prototypes as the two reference nodes): ``softplus((S(a, P_neg) - S(a, P_own)) / tau)``.

    The paper takes "the prototypes (the average results over all instances of
    the same class)" as reference nodes but does not say which negative
    prototype each anchor meets: kreid takes the most similar other one (the
    hardest), so the B anchors give the paper's B triplets.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    one_hot, means, own, valid = prototypes(embeddings, labels, leave_one_out)
    sims = similarity(embeddings, means, similarity_kind)                       # [B, C]
    s_own = _row_similarity(embeddings, own, similarity_kind)
    s_neg = tf.reduce_max(tf.where(one_hot > 0, -1e9, sims), axis=1)
    valid = valid & (tf.shape(one_hot)[1] > 1)
    terms = tf.nn.softplus((tf.where(valid, s_neg, s_own) - s_own) / temperature)
    return _average(terms, valid, nonzero_average=False)


def triplet_unified(embeddings, labels, temperature=0.1, similarity_kind: str = "cosine",
                    hard: bool = False) -> tf.Tensor:
    """The soft-margin triplet in the unified form (Zhang et al. Eq. 4-5 with the 1/tau
    of Eq. 1): ``log(1 + exp((S(a, n) - S(a, p)) / tau))``.

    "Note that we can adjust the range of similarity by multiplying a factor 1/tau
    over the similarity function" and "For each loss ... a learnable network
    parameter tau" (Sec. 3.1, 4.2): with cosine similarity in [-1, 1] and no tau
    the softplus stays nearly linear. ``hard`` False averages every valid
    (anchor, positive, negative) of the batch, Table 2's "HardMine: no" (its best
    Tri. + Cls. row and so the paper's baseline); True takes each anchor's least
    similar positive and most similar negative (batch hard). ``temperature`` may
    be a tensor or variable (learnable tau).
    """
    embeddings = tf.convert_to_tensor(embeddings)
    labels = tf.reshape(labels, [-1])
    sims = similarity(embeddings, embeddings, similarity_kind)                  # [B, B]
    same = tf.equal(labels[:, None], labels[None, :])
    pos = same & ~tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    neg = ~same
    if hard:
        s_ap = tf.reduce_min(tf.where(pos, sims, 1e9), axis=1)
        s_an = tf.reduce_max(tf.where(neg, sims, -1e9), axis=1)
        valid = tf.reduce_any(pos, 1) & tf.reduce_any(neg, 1)
        terms = tf.nn.softplus((tf.where(valid, s_an - s_ap, 0.0)) / temperature)
        return _average(terms, valid, nonzero_average=False)
    valid = pos[:, :, None] & neg[:, None, :]                                   # [a, p, n]
    diff = sims[:, None, :] - sims[:, :, None]                                  # S_an - S_ap
    terms = tf.nn.softplus(tf.where(valid, diff, 0.0) / temperature)
    return _average(terms, valid, nonzero_average=False)


def point_to_set(embeddings, labels, margin="soft", metric: str = "euclidean",
                 set_distance: str = "prototype", nonzero_average: bool = False) -> tf.Tensor:
    """Point-to-set triplet, distance form: ``f(m + D(a, S_y \\ a) - min_{c != y} D(a, S_c))``
    (the anchor left out of its own set; :func:`point_to_set_unified` is the paper's form).

    ``set_distance='prototype'``: distance to the set's mean embedding;
    ``'mean'``: mean of the distances to the set's members.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    m, outer = _margin(margin)
    one_hot, means, own, valid = prototypes(embeddings, labels, leave_one_out=True)
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
