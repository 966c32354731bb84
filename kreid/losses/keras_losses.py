"""Keras ``Loss`` wrappers of the triplet family for ``model.fit``.

``y_true`` are the integer identity labels [B], ``y_pred`` the embeddings
[B, D]; the batch must be a PK batch (``kreid.data.pipeline.train_dataset``).
Example::

    model.compile(optimizer="adam", loss=BatchHardLoss(margin="soft"))
    model.fit(kreid.data.pipeline.train_dataset(ds.train, 18, 4, (256, 128)), steps_per_epoch=100)
"""

from __future__ import annotations

import keras

from kreid.losses import triplet_family as triplet


class _TripletFamilyLoss(keras.losses.Loss):
    fn = None

    def __init__(self, margin="soft", metric: str = "euclidean", nonzero_average: bool = False,
                 name: str | None = None, **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name or self.__class__.__name__, reduction="sum", **kwargs)
        self.margin, self.metric, self.nonzero_average = margin, metric, nonzero_average

    def call(self, y_true, y_pred):
        return type(self).fn(y_pred, y_true, margin=self.margin, metric=self.metric,
                             nonzero_average=self.nonzero_average)

    def get_config(self):
        config = super().get_config()
        config.pop("reduction", None)
        return {**config, "margin": self.margin, "metric": self.metric,
                "nonzero_average": self.nonzero_average}


@keras.saving.register_keras_serializable(package="kreid")
class BatchHardLoss(_TripletFamilyLoss):
    """Eq. (5) of Hermans et al. 2017 (see :func:`kreid.losses.triplet_family.batch_hard`)."""
    fn = staticmethod(triplet.batch_hard)


@keras.saving.register_keras_serializable(package="kreid")
class BatchAllLoss(_TripletFamilyLoss):
    """Eq. (6) of Hermans et al. 2017."""
    fn = staticmethod(triplet.batch_all)


@keras.saving.register_keras_serializable(package="kreid")
class LiftedLoss(_TripletFamilyLoss):
    """The lifted embedding loss of Song et al. as written by Hermans et al."""
    fn = staticmethod(triplet.lifted)


@keras.saving.register_keras_serializable(package="kreid")
class LiftedGeneralizedLoss(_TripletFamilyLoss):
    """Eq. (7) of Hermans et al. 2017."""
    fn = staticmethod(triplet.lifted_generalized)
