"""Losses of the four papers: distances, triplet family, margin softmax, unified view.

Pure functions of (embeddings, labels[, extra]); Keras ``Loss`` wrappers for
``model.fit`` live in :mod:`kreid.losses.keras_losses`. A registry maps names
to loss functions so that configs can name them.
"""

from kreid.losses.distances import pairwise_distance
from kreid.losses.triplet_family import (batch_all, batch_hard, lifted, lifted_generalized,
                                  triplet, triplet_stats)

__all__ = ["pairwise_distance", "batch_hard", "batch_all", "lifted", "lifted_generalized",
           "triplet", "triplet_stats"]
