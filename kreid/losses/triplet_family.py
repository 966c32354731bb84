"""The triplet family of Hermans, Beyer, Leibe, *In Defense of the Triplet Loss* (2017).

All losses take embeddings [B, D] and integer labels [B] and return a
scalar. ``margin`` selects the hinge: a float ``m`` gives ``[m + x]_+``,
``'soft'`` the soft margin ``ln(1 + e^x)`` (Sec. 3.6; computed as a stable
softplus that does not overflow for large x), ``None`` no hinge (``x``).
``nonzero_average=True`` averages only the terms that are not zero (the
"!= 0" rows of Table 1); with no such term the loss is 0.

Degenerate batches, handled explicitly and never NaN:
* an anchor with no positive (its identity has a single image in the batch,
  K = 1) or no negative (one identity in the batch) has no defined term in
  Eq. (5)-(7); such anchors are left out of the average. If no anchor
  remains the loss is 0 (with zero gradient). The paper's reference code
  instead takes the hardest positive distance of such an anchor as 0.
"""

from __future__ import annotations

import tensorflow as tf

from kreid.losses.distances import pairwise_distance, safe_sqrt

_BIG = 1e9


def _margin(margin) -> tuple[float, object]:
    """(additive margin m, outer function) for the hinge variants."""
    if margin is None or margin == "none":
        return 0.0, tf.identity
    if margin == "soft":
        return 0.0, tf.nn.softplus
    try:
        return float(margin), tf.nn.relu
    except (TypeError, ValueError) as exc:
        raise ValueError(f"margin must be a float, 'soft' or None, got {margin!r}") from exc


def _average(terms: tf.Tensor, valid: tf.Tensor, nonzero_average: bool) -> tf.Tensor:
    mask = valid & tf.not_equal(terms, 0.0) if nonzero_average else valid
    mask = tf.cast(mask, terms.dtype)
    total = tf.reduce_sum(tf.where(mask > 0, terms, tf.zeros_like(terms)))
    return tf.math.divide_no_nan(total, tf.reduce_sum(mask))


def _masks(labels: tf.Tensor):
    labels = tf.reshape(labels, [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    eye = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
    return same & ~eye, ~same


def _check(embeddings: tf.Tensor, labels: tf.Tensor):
    embeddings = tf.convert_to_tensor(embeddings)
    if not embeddings.dtype.is_floating:
        embeddings = tf.cast(embeddings, tf.float32)
    if embeddings.shape.rank is not None and embeddings.shape.rank != 2:
        raise ValueError(f"embeddings must be [batch, dim], got shape {embeddings.shape}")
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    if embeddings.shape[0] is not None and labels.shape[0] is not None \
            and embeddings.shape[0] != labels.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings but {labels.shape[0]} labels")
    return embeddings, labels


def hardest(dists: tf.Tensor, labels: tf.Tensor):
    """Per anchor: hardest positive distance, hardest negative distance, and validity."""
    pos, neg = _masks(labels)
    hardest_pos = tf.reduce_max(tf.where(pos, dists, -_BIG), axis=1)
    hardest_neg = tf.reduce_min(tf.where(neg, dists, _BIG), axis=1)
    valid = tf.reduce_any(pos, axis=1) & tf.reduce_any(neg, axis=1)
    zero = tf.zeros_like(hardest_pos)
    return tf.where(valid, hardest_pos, zero), tf.where(valid, hardest_neg, zero), valid


def batch_hard(embeddings, labels, margin="soft", metric: str = "euclidean",
               nonzero_average: bool = False) -> tf.Tensor:
    """Batch hard triplet loss, Eq. (5) of Hermans et al. 2017.

    For every anchor a: ``f(m + max_p D(a, p) - min_n D(a, n))`` over the
    positives p != a and the negatives n of the batch.
    """
    embeddings, labels = _check(embeddings, labels)
    m, outer = _margin(margin)
    dists = pairwise_distance(embeddings, metric=metric)
    hp, hn, valid = hardest(dists, labels)
    return _average(outer(m + hp - hn), valid, nonzero_average)


def batch_all(embeddings, labels, margin="soft", metric: str = "euclidean",
              nonzero_average: bool = False) -> tf.Tensor:
    """Batch all triplet loss, Eq. (6): every triplet (a, p != a, n) of the batch."""
    embeddings, labels = _check(embeddings, labels)
    m, outer = _margin(margin)
    dists = pairwise_distance(embeddings, metric=metric)
    pos, neg = _masks(labels)
    valid = pos[:, :, None] & neg[:, None, :]
    terms = outer(m + dists[:, :, None] - dists[:, None, :])
    return _average(terms, valid, nonzero_average)


def _masked_logsumexp(x: tf.Tensor, mask: tf.Tensor, axis: int) -> tf.Tensor:
    """log sum exp over the masked entries; rows without any entry give -1e9."""
    x = tf.where(mask, x, -_BIG)
    peak = tf.stop_gradient(tf.reduce_max(x, axis=axis, keepdims=True))
    s = tf.reduce_sum(tf.where(mask, tf.exp(x - peak), tf.zeros_like(x)), axis=axis,
                      keepdims=True)
    out = tf.math.log(tf.maximum(s, 1e-30)) + peak
    return tf.squeeze(out, axis)


def lifted(embeddings, labels, margin=1.0, metric: str = "euclidean",
           nonzero_average: bool = False, pairs: str = "all") -> tf.Tensor:
    """Lifted embedding loss L_L of Song et al. (2016) as written by Hermans et al. (Sec. 2).

    For every positive pair (a, p):
    ``f(D(a, p) + log sum_n (e^{m - D(a, n)} + e^{m - D(p, n)}))`` over the
    negatives n of a (equivalently of p), averaged over positive pairs.
    ``pairs="all"``: every same-identity pair a < p of a PK batch. ``"triplets"``:
    the batch is stacked triplets (a, p, n) and only each triplet's (a, p) is a
    positive pair - the paper's "Lifted 1-pos." row, applied "to traditional 3B
    batches ... all possible negatives, but only one positive pair per triplet".
    Negatives are every image of another identity (Song et al.); the paper's
    printed "n != a, n != p" is read so.
    """
    if pairs not in ("all", "triplets"):
        raise ValueError(f"pairs must be 'all' or 'triplets', got {pairs!r}")
    embeddings, labels = _check(embeddings, labels)
    m, outer = _margin(margin)
    dists = pairwise_distance(embeddings, metric=metric)
    pos, neg = _masks(labels)
    # For a pair (a, p) the negatives of a and of p are the same set, so the sum
    # splits into per-anchor log-sum-exps combined with a stable logaddexp.
    per_anchor = _masked_logsumexp(-dists, neg, 1)
    x, y = per_anchor[:, None], per_anchor[None, :]
    top = tf.maximum(x, y)
    lse = top + tf.math.log1p(tf.exp(-tf.abs(x - y)))
    if pairs == "triplets":                 # (3t, 3t + 1) only
        index = tf.range(tf.shape(dists)[0])
        upper = (index[:, None] % 3 == 0) & (index[None, :] == index[:, None] + 1)
    else:
        upper = tf.linalg.band_part(tf.ones_like(dists), 0, -1) > 0
    valid = pos & upper & tf.reduce_any(neg, axis=1)[:, None]
    return _average(outer(m + dists + lse), valid, nonzero_average)


def lifted_generalized(embeddings, labels, margin=1.0, metric: str = "euclidean",
                       nonzero_average: bool = False, positives: str = "all") -> tf.Tensor:
    """Generalised lifted embedding loss L_LG, Eq. (7) of Hermans et al. 2017.

    Per anchor a: ``f(log sum_p e^{D(a, p)} + log sum_n e^{m - D(a, n)})``.

    ``positives="all"`` sums p = 1..K as Eq. (7) is printed ("sum_{p=1}^K"),
    which includes p = a (a constant e^{D(a,a)} = 1); ``"others"`` sums p != a,
    the "3-pos." reading of Table 1's row name at K = 4. The printed equation
    *subtracts* the negatives' log-sum-exp; as printed that would reward
    moving negatives closer, contradicting the text ("a smooth version of the
    batch hard loss", Eq. 5: max D(a,p) - min D(a,n) + m), so kreid adds it:
    ``log sum e^{m - D(a,n)}`` ~ ``m - min D(a,n)``.
    """
    if positives not in ("all", "others"):
        raise ValueError(f"positives must be 'all' (p = 1..K, Eq. 7 as printed) or 'others' "
                         f"(p != a), got {positives!r}")
    embeddings, labels = _check(embeddings, labels)
    m, outer = _margin(margin)
    dists = pairwise_distance(embeddings, metric=metric)
    pos, neg = _masks(labels)
    if positives == "all":
        pos = pos | tf.eye(tf.shape(pos)[0], dtype=tf.bool)
    valid = tf.reduce_any(pos, axis=1) & tf.reduce_any(neg, axis=1)
    terms = m + _masked_logsumexp(dists, pos, 1) + _masked_logsumexp(-dists, neg, 1)
    return _average(outer(tf.where(valid, terms, tf.zeros_like(terms))), valid,
                    nonzero_average)


def triplet(embeddings, triplets, margin=0.2, metric: str = "euclidean",
            nonzero_average: bool = False) -> tf.Tensor:
    """Vanilla triplet loss on given index triplets [T, 3] = (anchor, positive, negative).

    The triplets come from a miner (``kreid.mining.triplets``: random sampling
    or offline hard mining), the baselines of Table 1.
    """
    embeddings = tf.convert_to_tensor(embeddings)
    triplets = tf.reshape(tf.convert_to_tensor(triplets, tf.int32), [-1, 3])
    m, outer = _margin(margin)
    a, p, n = (tf.gather(embeddings, triplets[:, i]) for i in range(3))
    terms = outer(m + _rowwise(a, p, metric) - _rowwise(a, n, metric))
    return _average(terms, tf.ones_like(terms, tf.bool), nonzero_average)


def _rowwise(a: tf.Tensor, b: tf.Tensor, metric: str) -> tf.Tensor:
    """Distance between matching rows of a and b."""
    if metric == "cosine":
        return 1.0 - tf.reduce_sum(tf.math.l2_normalize(a, 1) * tf.math.l2_normalize(b, 1), 1)
    diff = a - b
    if metric == "cityblock":
        return tf.reduce_sum(tf.abs(diff), axis=1)
    d2 = tf.reduce_sum(tf.square(diff), axis=1)
    if metric == "euclidean":
        return safe_sqrt(d2)
    if metric == "sqeuclidean":
        return d2
    raise ValueError(f"unknown metric {metric!r}")


def given_positive(embeddings, labels, positive_index, margin="soft",
                   metric: str = "euclidean", nonzero_average: bool = False,
                   hardest_positive: bool = False) -> tf.Tensor:
    """Triplets with a chosen positive and the batch-hard negative (RPTM, Eq. 8 of Ghosh et al.).

    ``positive_index`` [B] gives, per anchor, the batch position of its
    positive (chosen by ``kreid.mining.rptm``), or -1 for rows that are not
    anchors: ``f(m + D(a, positive) - min_n D(a, n))``. ``hardest_positive``: the
    same anchors and batch, but each anchor's farthest same-identity image as the
    positive (batch hard restricted to these anchors: the control that differs from
    RPTM in the positive only).
    """
    embeddings, labels = _check(embeddings, labels)
    m, outer = _margin(margin)
    dists = pairwise_distance(embeddings, metric=metric)
    pos, neg = _masks(labels)
    positive_index = tf.reshape(tf.cast(positive_index, tf.int32), [-1])
    is_anchor = positive_index >= 0
    safe = tf.where(is_anchor, positive_index, tf.zeros_like(positive_index))
    if hardest_positive:
        d_ap = tf.reduce_max(tf.where(pos, dists, tf.zeros_like(dists)), axis=1)
    else:
        d_ap = tf.gather(dists, safe, batch_dims=1)
    d_an = tf.reduce_min(tf.where(neg, dists, _BIG), axis=1)
    valid = is_anchor & tf.reduce_any(neg, axis=1)
    d_an = tf.where(valid, d_an, tf.zeros_like(d_an))
    return _average(outer(m + d_ap - d_an), valid, nonzero_average)


def triplet_stats(embeddings, labels, metric: str = "euclidean", margin="soft") -> dict:
    """Training-health diagnostics the paper recommends watching (batch-hard view).

    Returns scalars: ``active`` (fraction of anchors whose batch-hard term is
    > 1e-5), ``hardest_pos`` and ``hardest_neg`` (mean distances), ``mean_pos``
    and ``mean_neg`` (mean over all positive / negative pairs), ``norm`` (mean
    embedding norm) and ``top1`` (fraction of anchors whose nearest neighbour
    shares its label).
    """
    embeddings, labels = _check(embeddings, labels)
    m, outer = _margin(margin)
    dists = pairwise_distance(embeddings, metric=metric)
    pos, neg = _masks(labels)
    hp, hn, valid = hardest(dists, labels)
    vf = tf.cast(valid, dists.dtype)
    terms = outer(m + hp - hn) * vf
    eye = tf.eye(tf.shape(dists)[0], dtype=tf.bool)
    nearest = tf.argmin(tf.where(eye, _BIG, dists), axis=1)
    top1 = tf.cast(tf.gather(labels, nearest) == labels, dists.dtype)

    def masked_mean(x, mask):
        mask = tf.cast(mask, x.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(x * mask), tf.reduce_sum(mask))

    return {
        "active": masked_mean(tf.cast(terms > 1e-5, dists.dtype), valid),
        "hardest_pos": masked_mean(hp, valid), "hardest_neg": masked_mean(hn, valid),
        "mean_pos": masked_mean(dists, pos), "mean_neg": masked_mean(dists, neg),
        "norm": tf.reduce_mean(tf.norm(embeddings, axis=1)),
        "top1": tf.reduce_mean(top1),
    }
