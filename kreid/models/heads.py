"""Heads for the joint and classification losses, as serialisable Keras layers.

* :class:`AngularMarginHead` - identity classifier of Sabri et al. (Eq. 2):
  cosine between L2-normalised features and class weights, scale s,
  additive angular margin m on the target class when labels are given.
* :class:`AttributeHeads` - M binary attributes, each a 2-way angular-margin
  classifier on its own Q-dim slice of the feature (Eq. 3, Q = 16).
* :class:`BNNeckClassifier` - BN-neck (BN without shift) + bias-free linear
  classifier (Luo et al.), the classification loss of the unified view.

The meta prototypical N-tuplet head computes a loss, so it lives with the
loss terms (:class:`kreid.training.terms.MetaPrototypeHead`); the heads here
only produce logits and import no loss code.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from kreid.ops.angular import angular_margin_logits


@keras.saving.register_keras_serializable(package="kreid")
class AngularMarginHead(layers.Layer):
    """Additive angular margin classifier.

    Args:
      num_classes: number of training identities.
      scale: logit scale s.
      margin: additive angular margin m in radians (0 = normalised softmax, "AM0").

    Call ``head(features, labels)`` during training (margin applied to the
    target class) and ``head(features)`` otherwise. Returns logits [B, C].

    Example:
      >>> head = AngularMarginHead(10, scale=16.0, margin=0.3)
      >>> head(tf.random.normal([4, 8]), tf.constant([0, 1, 2, 3])).shape
      TensorShape([4, 10])
    """

    def __init__(self, num_classes: int, scale: float = 16.0, margin: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.scale, self.margin = int(num_classes), float(scale), float(margin)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.num_classes),
                                      initializer="glorot_uniform")

    def cosine(self, features):
        return tf.matmul(tf.math.l2_normalize(features, axis=-1),
                         tf.math.l2_normalize(self.kernel, axis=0))

    def call(self, features, labels=None):
        return angular_margin_logits(self.cosine(features), labels, self.scale, self.margin)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale,
                "margin": self.margin}


@keras.saving.register_keras_serializable(package="kreid")
class AttributeHeads(layers.Layer):
    """M binary attribute classifiers, each on its own Q-dim slice of the feature.

    Attribute i reads ``features[:, i*Q:(i+1)*Q]``; the feature must have at
    least M*Q dimensions. Returns logits [B, M, 2]; with ``labels`` [B, M]
    (0/1, -1 = missing) the margin is applied to each target.
    """

    def __init__(self, num_attributes: int, slice_dim: int = 16, scale: float = 16.0,
                 margin: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_attributes, self.slice_dim = int(num_attributes), int(slice_dim)
        self.scale, self.margin = float(scale), float(margin)

    def build(self, input_shape):
        need = self.num_attributes * self.slice_dim
        if input_shape[-1] is not None and input_shape[-1] < need:
            raise ValueError(f"AttributeHeads: {self.num_attributes} attributes x Q="
                             f"{self.slice_dim} need a feature of >= {need} dims, got "
                             f"{input_shape[-1]}")
        self.kernel = self.add_weight(name="kernel",
                                      shape=(self.num_attributes, self.slice_dim, 2),
                                      initializer="glorot_uniform")

    def call(self, features, labels=None):
        m, q = self.num_attributes, self.slice_dim
        slices = tf.reshape(features[:, :m * q], [-1, m, q])
        cos = tf.einsum("bmq,mqc->bmc", tf.math.l2_normalize(slices, -1),
                        tf.math.l2_normalize(self.kernel, 1))
        return angular_margin_logits(cos, labels, self.scale, self.margin)

    def get_config(self):
        return {**super().get_config(), "num_attributes": self.num_attributes,
                "slice_dim": self.slice_dim, "scale": self.scale, "margin": self.margin}


@keras.saving.register_keras_serializable(package="kreid")
class BNNeckClassifier(layers.Layer):
    """BN-neck (batch norm without shift) followed by a bias-free linear classifier.

    ``bn=False``: the linear classifier alone, for a model that ends in its own
    BN-neck (Zhang et al.: "a Batch Normalization (BN) layer is added to obtain
    the ReID feature vector x ... and a followed Fully Connected (FC) layer is
    employed as the classifier": one BN, not two).
    """

    def __init__(self, num_classes: int, bn: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.use_bn = int(num_classes), bool(bn)
        self.bn = layers.BatchNormalization(center=False, name="bnneck") if self.use_bn else None
        self.fc = layers.Dense(self.num_classes, use_bias=False, name="classifier",
                               kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))

    def build(self, input_shape):
        if self.bn is not None:
            self.bn.build(input_shape)
        self.fc.build(input_shape)

    def call(self, features, training=None):
        if self.bn is not None:
            features = self.bn(features, training=training)
        return self.fc(features)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "bn": self.use_bn}
