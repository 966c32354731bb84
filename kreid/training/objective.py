"""The training objective: named loss terms with weights, and the heads they need.

A config names its loss as a weighted sum, e.g. (Sabri et al. Eq. 7)::

    losses = {"am_softmax": {"weight": 1.0, "scale": 16, "margin": 0.0},
              "batch_hard": {"weight": 0.33, "margin": "soft"},
              "attributes": {"weight": 0.25, "slice_dim": 16}}

Registered terms (name -> paper):

==================  =================================================================
batch_hard          Eq. (5), Hermans et al. (options: margin, metric, nonzero_average,
                    features = raw | normalized)
batch_all           Eq. (6); ``lifted``: Song et al.; ``lifted_generalized``: Eq. (7)
triplet             vanilla triplet on random in-batch triplets (``mining: random``) or
                    on offline-hard-mined triplets (``mining: ohm``, see the trainer)
am_softmax          additive angular margin softmax (Sabri et al. Eq. 2) on the embedding
attributes          per-attribute 2-way angular-margin heads (Sabri et al. Eq. 3)
bnneck_ce           cross-entropy on a BN-neck classifier (label smoothing option)
ntuplet             N-tuplet loss (Zhang et al. Eq. 6) over ``num_tuplets`` in-batch tuplets
point_to_set        point-to-set triplet (Zhang et al.)
prototypical        prototypical N-tuplet (batch prototypes)
mpn                 meta prototypical N-tuplet (Zhang et al. Eq. 7-10; learnable tau, phi)
rptm                chosen positive + batch-hard negative (Ghosh et al. Eq. 8)
==================  =================================================================

Distribution: per-sample terms (the classifiers) are averaged over the local
replica batch; batch-coupled terms (triplets, tuplets, prototypes) are
computed on the *global* batch gathered from all replicas. Every term is
divided by the number of replicas, whose gradients are then summed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from kreid.losses import margin_softmax as ms
from kreid.losses import triplet_family as tfam
from kreid.losses import unified
from kreid.models import heads

TRIPLET_FAMILY = {"batch_hard": tfam.batch_hard, "batch_all": tfam.batch_all,
                  "lifted": tfam.lifted, "lifted_generalized": tfam.lifted_generalized}
HEAD_TERMS = ("am_softmax", "attributes", "bnneck_ce", "mpn")
COUPLED_TERMS = tuple(TRIPLET_FAMILY) + ("triplet", "ntuplet", "point_to_set", "prototypical",
                                         "mpn", "rptm")
TERMS = tuple(TRIPLET_FAMILY) + ("triplet", "am_softmax", "attributes", "bnneck_ce", "ntuplet",
                                 "point_to_set", "prototypical", "mpn", "rptm")


@dataclasses.dataclass
class Term:
    name: str
    weight: float
    options: dict


def parse_losses(losses: dict) -> list[Term]:
    """``{"name": {"weight": w, **options}}`` -> terms; unknown names are refused."""
    if not losses:
        raise ValueError("config.losses is empty: name at least one loss term")
    terms = []
    for name, spec in dict(losses).items():
        if name not in TERMS:
            raise ValueError(f"config.losses.{name}: unknown loss term; known: {', '.join(TERMS)}")
        spec = dict(spec or {})
        weight = float(spec.pop("weight", 1.0))
        if weight:
            terms.append(Term(name, weight, spec))
    return terms


def _margin(value):
    if isinstance(value, str) and value not in ("soft", "none"):
        return float(value)
    return None if value == "none" else value


def in_batch_triplets(labels: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """For every anchor with a positive and a negative: one random positive and negative."""
    labels = tf.reshape(labels, [-1])
    b = tf.shape(labels)[0]
    same = tf.equal(labels[:, None], labels[None, :]) & ~tf.eye(b, dtype=tf.bool)
    diff = ~tf.equal(labels[:, None], labels[None, :])
    noise = tf.random.stateless_uniform([2, b, b], seed)
    pos = tf.argmax(tf.where(same, noise[0], -1.0), axis=1, output_type=tf.int32)
    neg = tf.argmax(tf.where(diff, noise[1], -1.0), axis=1, output_type=tf.int32)
    ok = tf.reduce_any(same, 1) & tf.reduce_any(diff, 1)
    anchors = tf.boolean_mask(tf.range(b), ok)
    return tf.stack([anchors, tf.boolean_mask(pos, ok), tf.boolean_mask(neg, ok)], axis=1)


def in_batch_tuplets(labels: tf.Tensor, n: int, num: int, seed: tf.Tensor) -> tf.Tensor:
    """``num`` tuplets (anchor, positive, n-1 negatives of distinct identities) from the batch."""
    labels = tf.reshape(labels, [-1])
    b = tf.shape(labels)[0]
    classes, cls_of = tf.unique(labels)
    c = tf.shape(classes)[0]
    same = tf.equal(labels[:, None], labels[None, :]) & ~tf.eye(b, dtype=tf.bool)
    has_pos = tf.reduce_any(same, 1)
    noise = tf.random.stateless_uniform([4, num, b], seed)
    anchors = tf.argmax(tf.where(has_pos[None], noise[0], -1.0), 1, output_type=tf.int32)
    pos = tf.argmax(tf.where(tf.gather(same, anchors), noise[1], -1.0), 1, output_type=tf.int32)
    # n-1 other classes per tuplet: top-(n-1) of random scores over classes != anchor's
    cls_noise = tf.random.stateless_uniform([num, c], seed + 1)
    own = tf.one_hot(tf.gather(cls_of, anchors), c, on_value=True, off_value=False)
    _, other = tf.math.top_k(tf.where(own, -1.0, cls_noise), k=n - 1)
    member = tf.equal(cls_of[None, None, :], other[:, :, None])             # [num, n-1, b]
    pick_noise = tf.random.stateless_uniform([num, n - 1, b], seed + 2)
    negs = tf.argmax(tf.where(member, pick_noise, -1.0), 2, output_type=tf.int32)
    return tf.concat([anchors[:, None], pos[:, None], negs], axis=1)


class Objective:
    """Builds the heads of the configured terms and evaluates the weighted loss."""

    def __init__(self, losses: dict, num_classes: int, embedding_dim: int,
                 num_attributes: int = 0, shared_heads: dict | None = None):
        self.terms = parse_losses(losses)
        self.heads: dict[str, tf.keras.layers.Layer] = {}
        for t in self.terms:
            o = t.options
            if shared_heads is not None and t.name in shared_heads:
                self.heads[t.name] = shared_heads[t.name]
                continue
            if t.name == "am_softmax":
                self.heads[t.name] = heads.AngularMarginHead(
                    num_classes, scale=float(o.get("scale", 16.0)),
                    margin=float(o.get("margin", 0.0)), name="am_head")
            elif t.name == "attributes":
                if num_attributes == 0:
                    raise ValueError("config.losses.attributes: the dataset has no binary "
                                     "attributes")
                self.heads[t.name] = heads.AttributeHeads(
                    num_attributes, slice_dim=int(o.get("slice_dim", 16)),
                    scale=float(o.get("scale", 16.0)), margin=float(o.get("margin", 0.0)),
                    name="attribute_heads")
            elif t.name == "bnneck_ce":
                self.heads[t.name] = heads.BNNeckClassifier(num_classes, name="bnneck_classifier")
            elif t.name == "mpn":
                self.heads[t.name] = heads.MetaPrototypeHead(
                    reduction=int(o.get("reduction", 8)),
                    initial_temperature=float(o.get("temperature", 0.1)), name="mpn_head")
        self.embedding_dim = embedding_dim

    def build(self) -> None:
        feats = tf.zeros((2, self.embedding_dim))
        labels = tf.constant([0, 1])
        for name, head in self.heads.items():
            if name == "attributes":
                head(feats, tf.zeros((2, head.num_attributes), tf.int32))
            elif name == "bnneck_ce":
                head(feats, training=False)
            else:
                head(feats, labels)

    @property
    def trainable_variables(self) -> list:
        return [v for h in self.heads.values() for v in h.trainable_variables]

    def __call__(self, emb: tf.Tensor, batch: dict, gather: Callable[[tf.Tensor], tf.Tensor],
                 num_replicas: int, seed: tf.Tensor, training: bool = True):
        """Returns (loss for this replica, {term name: global term value})."""
        labels = tf.cast(batch["labels"], tf.int32)
        g_emb, g_labels = gather(emb), gather(labels)
        values = {}
        for t in self.terms:
            o = t.options
            if t.name in TRIPLET_FAMILY:
                feats = tf.math.l2_normalize(g_emb, 1) if o.get("features") == "normalized" \
                    else g_emb
                v = TRIPLET_FAMILY[t.name](feats, g_labels, margin=_margin(o.get("margin", "soft")),
                                           metric=o.get("metric", "euclidean"),
                                           nonzero_average=bool(o.get("nonzero_average", False)))
            elif t.name == "triplet":
                if o.get("mining", "random") == "ohm":   # batch = consecutive mined triplets
                    triplets = tf.reshape(tf.range(tf.shape(g_emb)[0]), [-1, 3])
                else:
                    triplets = in_batch_triplets(g_labels, seed)
                v = tfam.triplet(g_emb, triplets, margin=_margin(o.get("margin", 0.2)),
                                 metric=o.get("metric", "euclidean"))
            elif t.name == "am_softmax":
                v = ms.softmax_cross_entropy(self.heads[t.name](emb, labels), labels)
            elif t.name == "attributes":
                attr = tf.cast(batch["attributes"], tf.int32)
                v = ms.attribute_loss(self.heads[t.name](emb, attr), attr)
            elif t.name == "bnneck_ce":
                v = ms.softmax_cross_entropy(self.heads[t.name](emb, training=training), labels,
                                             float(o.get("label_smoothing", 0.1)))
            elif t.name == "ntuplet":
                tuplets = in_batch_tuplets(g_labels, int(o.get("n", 16)),
                                           int(o.get("num_tuplets", 32)), seed)
                v = unified.ntuplet(g_emb, tuplets, float(o.get("temperature", 0.1)),
                                    o.get("similarity", "cosine"))
            elif t.name == "point_to_set":
                v = unified.point_to_set(g_emb, g_labels, margin=_margin(o.get("margin", "soft")),
                                         set_distance=o.get("set_distance", "prototype"))
            elif t.name == "prototypical":
                v = unified.prototypical_ntuplet(g_emb, g_labels,
                                                 float(o.get("temperature", 0.1)),
                                                 o.get("similarity", "cosine"))
            elif t.name == "mpn":
                v = self.heads[t.name](g_emb, g_labels, training=training)
            elif t.name == "rptm":
                v = tfam.given_positive(g_emb, g_labels, _global_positions(batch, gather),
                                        margin=_margin(o.get("margin", "soft")),
                                        metric=o.get("metric", "euclidean"))
            values[t.name] = v
        total = tf.add_n([t.weight * values[t.name] for t in self.terms])
        return total / float(num_replicas), values


def _global_positions(batch: dict, gather) -> tf.Tensor:
    """The RPTM sampler gives positions in the global batch: gather them unchanged."""
    return gather(tf.cast(batch["positive_index"], tf.int32))


def attribute_columns(attributes: np.ndarray) -> np.ndarray:
    """Indices of the binary attribute columns (values within {-1, 0, 1})."""
    if attributes.size == 0:
        return np.zeros(0, int)
    return np.flatnonzero((attributes <= 1).all(0) & (attributes >= -1).all(0))
