"""Losses of the four papers: distances, triplet family, margin softmax, unified view.

Pure functions of (embeddings, labels[, extra]); configs name them through the
loss-term registry (:mod:`kreid.training.terms`). For Keras' own
``model.fit``, the triplet family is also a ``keras.losses.Loss``
(:mod:`kreid.losses.keras_losses`: ``BatchHardLoss``, ``BatchAllLoss``,
``LiftedLoss``, ``LiftedGeneralizedLoss``) on PK batches.
"""

from kreid.losses.distances import pairwise_distance
from kreid.losses.keras_losses import (BatchAllLoss, BatchHardLoss, LiftedGeneralizedLoss,
                                       LiftedLoss)
from kreid.losses.triplet_family import (batch_all, batch_hard, lifted, lifted_generalized,
                                         triplet, triplet_stats)

__all__ = ["pairwise_distance", "batch_hard", "batch_all", "lifted", "lifted_generalized",
           "triplet", "triplet_stats", "BatchHardLoss", "BatchAllLoss", "LiftedLoss",
           "LiftedGeneralizedLoss"]
