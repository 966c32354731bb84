"""The training objective: a weighted sum of registered loss terms and the heads they need.

Terms (name -> paper) live in :mod:`kreid.training.terms`, one class each:

==================  =================================================================
batch_hard          Eq. (5), Hermans et al. (options: margin, metric, nonzero_average,
                    features = raw | normalized)
batch_all           Eq. (6); ``lifted``: Song et al.; ``lifted_generalized``: Eq. (7)
triplet             vanilla triplet on random in-batch triplets (``mining: random``) or
                    on offline-hard-mined triplets (``mining: ohm``)
am_softmax          additive angular margin softmax (Sabri et al. Eq. 2) on the embedding
attributes          per-attribute 2-way angular-margin heads (Sabri et al. Eq. 3)
bnneck_ce           cross-entropy on a BN-neck classifier (label smoothing option)
ntuplet             N-tuplet loss (Zhang et al. Eq. 6) over ``num_tuplets`` in-batch tuplets
unified_triplet     soft-margin triplet in the unified form with a learnable tau (Zhang
                    et al.'s "Tri.", Eq. 4 with 1/tau; every triplet or batch hard)
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

import copy
from typing import Callable, Sequence

import tensorflow as tf

from kreid.errors import ConfigValueError
from kreid.training.terms import Inputs, Term, parse_losses


class Objective:
    """The configured terms with their heads; ``shared_heads`` (name -> layer) lets the
    stages of a multi-stage run train the same heads.

    ``terms``: the stage's terms (:class:`kreid.training.plan.StagePlan.terms`; each
    is copied, so a plan can build more than one objective) or a losses dict
    (``{"batch_hard": {"weight": 1.0}}``), parsed here.

    A term may reserve leading dimensions of the feature for itself
    (:meth:`~kreid.training.terms.Term.reserved_dims`); Sabri et al.'s attribute
    heads do (Sec. 4.1, Eq. 7): "f_theta_a has size M x Q ... The rest of the
    embedding features, f_theta_id, is the input to the identity classifier and
    triplet loss". kreid takes f_attr = the first M*Q dimensions (the paper does
    not say which) and f_id = the rest: every other term sees only f_id, the
    reserving term only its slice, and the test-time embedding is f_id
    (``reserved_dim``).
    """

    def __init__(self, terms: Sequence[Term] | dict, num_classes: int, embedding_dim: int,
                 num_attributes: int = 0, shared_heads: dict | None = None):
        self.terms = parse_losses(terms) if hasattr(terms, "items") else \
            [copy.copy(t) for t in terms]
        reserving = [t for t in self.terms if t.reserved_dims(num_attributes)]
        if len(reserving) > 1:
            raise ConfigValueError(f"config.losses: {reserving[0].name} and "
                                   f"{reserving[1].name} both reserve leading feature "
                                   "dimensions; one term at most can")
        self.reserver = reserving[0] if reserving else None
        self.reserved_dim = self.reserver.reserved_dims(num_attributes) if reserving else 0
        self.embedding_dim = embedding_dim - self.reserved_dim        # f_id
        if self.embedding_dim <= 0:
            raise ConfigValueError(f"config.losses.{self.reserver.name}: it reserves "
                                   f"{self.reserved_dim} dims ({num_attributes} attributes), "
                                   f"which leave no identity feature of a {embedding_dim}-d "
                                   "embedding")
        self.heads: dict[str, tf.keras.layers.Layer] = {}
        for t in self.terms:
            shared = (shared_heads or {}).get(t.name)
            t.head = shared or t.make_head(num_classes, self.feature_dim(t), num_attributes)
            if t.head is not None:
                self.heads[t.name] = t.head

    def feature_dim(self, term: Term) -> int:
        """The width of the feature ``term`` reads: its reserved slice, or f_id."""
        return self.reserved_dim if term is self.reserver else self.embedding_dim

    def build(self) -> None:
        for t in self.terms:
            t.build_head(self.feature_dim(t))

    @property
    def exported_heads(self) -> dict:
        """The heads ``final.keras`` keeps as outputs (the terms' ``exports_head``)."""
        return {t.name: t.head for t in self.terms if t.exports_head and t.head is not None}

    @property
    def trainable_variables(self) -> list:
        return [v for h in self.heads.values() for v in h.trainable_variables]

    def __call__(self, emb: tf.Tensor, batch: dict, gather: Callable[[tf.Tensor], tf.Tensor],
                 num_replicas: int, seed: tf.Tensor, training: bool = True):
        """Returns (loss for this replica, {term name: global term value})."""
        labels = tf.cast(batch["labels"], tf.int32)
        reserved, f_id = emb[:, :self.reserved_dim], emb[:, self.reserved_dim:]
        x = Inputs(f_id, labels, gather(f_id), gather(labels), batch, gather, seed, training,
                   reserved if self.reserved_dim else None)
        values = {t.name: t(x) for t in self.terms}
        total = tf.add_n([t.weight * values[t.name] for t in self.terms])
        return total / float(num_replicas), values
