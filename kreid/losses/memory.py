"""Cluster-memory contrastive loss (Dai et al., *Cluster Contrast for Unsupervised
Person Re-Identification*, 2021; the memory of Ge et al.'s SpCL, NeurIPS 2020).

The memory holds one L2-normalised centroid per pseudo-identity (cluster). For
a normalised feature q of cluster y (Dai et al. Eq. 3, ClusterNCE)::

    L_q = -log( exp(q . c_y / tau) / sum_k exp(q . c_k / tau) )

and after the step each cluster present in the batch moves towards its
features (Eq. 4 with the batch mean, as the authors' ``cm`` memory does per
sample): ``c_k <- normalise(m c_k + (1 - m) mean_{i: y_i = k} q_i)``.
Pure functions of tensors; the memory variable lives in the term's head
(:class:`kreid.training.terms.ClusterMemory`).
"""

from __future__ import annotations

import tensorflow as tf


def cluster_nce(features: tf.Tensor, labels: tf.Tensor, memory: tf.Tensor,
                temperature: float) -> tf.Tensor:
    """Mean ClusterNCE of ``features`` [B, D] (normalised here) against ``memory`` [C, D]."""
    q = tf.math.l2_normalize(tf.cast(features, tf.float32), 1)
    logits = tf.matmul(q, tf.cast(memory, tf.float32), transpose_b=True) / temperature
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits))


def momentum_update(memory: tf.Tensor, features: tf.Tensor, labels: tf.Tensor,
                    momentum: float) -> tf.Tensor:
    """The memory after one update: every cluster of the batch moves to its mean feature."""
    q = tf.math.l2_normalize(tf.stop_gradient(tf.cast(features, tf.float32)), 1)
    labels = tf.cast(labels, tf.int32)
    num = tf.shape(memory)[0]
    sums = tf.math.unsorted_segment_sum(q, labels, num)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(labels, tf.float32), labels, num)
    present = counts > 0
    mean = sums / tf.maximum(counts, 1.0)[:, None]
    moved = tf.math.l2_normalize(momentum * memory + (1.0 - momentum) * mean, 1)
    return tf.where(present[:, None], moved, memory)
