"""The cluster-memory contrastive loss (Dai et al. 2021) against NumPy, and its head."""

import numpy as np
import pytest
import tensorflow as tf

from kreid.losses import memory


def _np_nce(f, y, mem, tau):
    q = f / np.linalg.norm(f, axis=1, keepdims=True)
    logits = q @ mem.T / tau
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


def _np_update(mem, f, y, m):
    q = f / np.linalg.norm(f, axis=1, keepdims=True)
    out = mem.copy()
    for c in np.unique(y):
        v = m * mem[c] + (1 - m) * q[y == c].mean(0)
        out[c] = v / np.linalg.norm(v)
    return out


def test_cluster_nce_and_momentum_update_match_numpy():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(8, 5)) * 10            # raw scale: normalised inside
    y = np.array([0, 0, 1, 3, 3, 3, 1, 0])
    mem = rng.normal(size=(5, 5))
    mem /= np.linalg.norm(mem, axis=1, keepdims=True)
    got = memory.cluster_nce(tf.constant(f, tf.float32), tf.constant(y), tf.constant(mem,
                                                                                   tf.float32),
                             0.05)
    np.testing.assert_allclose(got.numpy(), _np_nce(f, y, mem, 0.05), rtol=1e-4)
    new = memory.momentum_update(tf.constant(mem, tf.float32), tf.constant(f, tf.float32),
                                 tf.constant(y), 0.2).numpy()
    np.testing.assert_allclose(new, _np_update(mem, f, y, 0.2), atol=1e-5)
    np.testing.assert_array_equal(new[[2, 4]], mem[[2, 4]].astype(np.float32))   # absent


def test_duplicate_and_huge_features_stay_finite():
    f = tf.constant([[1e30, 0.0], [1e30, 0.0], [0.0, 0.0]], tf.float32)   # zero vector too
    y = tf.constant([0, 0, 1])
    mem = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    with tf.GradientTape() as tape:
        tape.watch(f)
        loss = memory.cluster_nce(f, y, mem, 0.05)
    assert np.isfinite(loss.numpy()) and np.isfinite(tape.gradient(loss, f).numpy()).all()


def test_head_starts_from_centroids_and_refuses_a_wrong_file(tmp_path):
    from kreid.errors import ConfigValueError
    from kreid.training.terms import ClusterMemoryHead

    cents = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]], np.float32)
    path = str(tmp_path / "c.npy")
    np.save(path, cents)
    head = ClusterMemoryHead(3, 0.5, path)
    head.build((None, 2))
    np.testing.assert_allclose(head.memory.numpy(), [[0.6, 0.8], [0, 1], [1, 0]], atol=1e-6)
    head(tf.constant([[0.0, 1.0]]), tf.constant([0]), training=True)
    np.testing.assert_allclose(head.memory.numpy()[0],
                               _np_update(cents / np.linalg.norm(cents, axis=1)[:, None],
                                          np.array([[0.0, 1.0]]), np.array([0]), 0.5)[0],
                               atol=1e-6)
    with pytest.raises(ConfigValueError, match=r"centroids=.*shape \(3, 2\), expected \(4, 2\)"):
        ClusterMemoryHead(4, 0.5, path).build((None, 2))
    with pytest.raises(ConfigValueError, match="cannot read"):
        ClusterMemoryHead(3, 0.5, str(tmp_path / "none.npy")).build((None, 2))
