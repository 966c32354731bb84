"""Triplet family against independent NumPy loops of Hermans et al.'s equations."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from kreid.losses import distances
from kreid.losses import triplet_family as triplet
from tests.losses import reference as ref

LOSSES = ["batch_hard", "batch_all", "lifted", "lifted_generalized"]
MARGINS = [0.2, 1.0, "soft", None]


def _batch(seed, p=4, k=3, dim=8, scale=1.0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(p * k, dim)) * scale).astype(np.float32)
    y = np.repeat(rng.permutation(50)[:p], k)
    perm = rng.permutation(p * k)
    return x[perm], y[perm]


@pytest.mark.parametrize("metric", distances.METRICS)
def test_pairwise_distance_matches_loops(metric):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    got = distances.pairwise_distance(a.astype(np.float32), b.astype(np.float32), metric)
    np.testing.assert_allclose(got.numpy(), ref.cdist(a, b, metric), rtol=1e-4, atol=1e-5)
    self = distances.pairwise_distance(a.astype(np.float32), metric=metric).numpy()
    assert (np.diag(self) == 0).all()


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("margin", MARGINS)
@pytest.mark.parametrize("nonzero", [False, True])
def test_losses_match_reference(name, margin, nonzero):
    for seed in range(3):
        x, y = _batch(seed, scale=0.3)
        got = float(getattr(triplet, name)(x, y, margin=margin, nonzero_average=nonzero))
        want = getattr(ref, name)(x.astype(np.float64), y, margin, nonzero=nonzero)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("metric", ["sqeuclidean", "cityblock", "cosine"])
@pytest.mark.parametrize("name", ["batch_hard", "batch_all"])
def test_other_metrics(name, metric):
    x, y = _batch(7, scale=0.2)
    got = float(getattr(triplet, name)(x, y, margin=0.5, metric=metric))
    want = getattr(ref, name)(x.astype(np.float64), y, 0.5, metric=metric)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_hand_checked_batch_hard():
    # two identities on a line: a0=0, a1=1 (id 0); b0=3, b1=5 (id 1)
    x = np.array([[0.0], [1.0], [3.0], [5.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    # anchor 0: hp=1, hn=3 -> 1-3=-2; anchor 1: hp=1, hn=2 -> -1
    # anchor 2: hp=2, hn=2 -> 0;  anchor 3: hp=2, hn=4 -> -2
    np.testing.assert_allclose(float(triplet.batch_hard(x, y, margin=1.5)),
                               np.mean([0, 0.5, 1.5, 0]), rtol=1e-6)
    np.testing.assert_allclose(float(triplet.batch_hard(x, y, margin=1.5,
                                                        nonzero_average=True)), 1.0, rtol=1e-6)
    soft = np.mean(np.log1p(np.exp([-2.0, -1.0, 0.0, -2.0])))
    np.testing.assert_allclose(float(triplet.batch_hard(x, y, margin="soft")), soft, rtol=1e-6)
    np.testing.assert_allclose(float(triplet.batch_hard(x, y, margin=None)), -1.25, rtol=1e-6)


def test_vanilla_triplet_on_index_triplets():
    x, y = _batch(3)
    t = np.array([[0, 1, 2], [3, 4, 5], [6, 0, 9]])
    for margin in MARGINS:
        got = float(triplet.triplet(x, t, margin=margin))
        np.testing.assert_allclose(got, ref.triplet(x.astype(np.float64), t, margin),
                                   rtol=1e-4, atol=1e-6)


def _grad(fn, x, y):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = fn(x, y)
    return loss, tape.gradient(loss, x)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("margin", [0.2, "soft"])
def test_duplicate_embeddings_give_finite_gradients(name, margin):
    x = np.zeros((8, 4), np.float32)               # every embedding identical: D = 0
    x[4:] = x[:4]
    y = np.repeat([0, 1], 4)
    loss, grad = _grad(lambda e, l: getattr(triplet, name)(e, l, margin=margin), x, y)
    assert np.isfinite(float(loss)) and np.isfinite(grad.numpy()).all()
    x2, _ = _batch(1, p=2, k=4)
    x2[1] = x2[0]                                   # one duplicated pair
    loss, grad = _grad(lambda e, l: getattr(triplet, name)(e, l, margin=margin), x2, y)
    assert np.isfinite(float(loss)) and np.isfinite(grad.numpy()).all()


@pytest.mark.parametrize("name", LOSSES)
def test_huge_distances_do_not_overflow(name):
    x, y = _batch(2, scale=1e4)                     # distances ~ 1e4: e^x would overflow
    loss, grad = _grad(lambda e, l: getattr(triplet, name)(e, l, margin="soft"), x, y)
    assert np.isfinite(float(loss)) and np.isfinite(grad.numpy()).all()
    want = getattr(ref, name)(x.astype(np.float64), y, "soft")
    if np.isfinite(want):
        np.testing.assert_allclose(float(loss), want, rtol=1e-3)


@pytest.mark.parametrize("name", LOSSES)
def test_k1_and_single_identity_batches(name):
    fn = getattr(triplet, name)
    if name == "lifted_generalized":   # p = 1..K as printed counts the anchor: K=1 has a term
        x, _ = _batch(4, p=4, k=2)
        loss, grad = _grad(lambda e, l: fn(e, l, margin="soft"), x, np.arange(8))
        np.testing.assert_allclose(float(loss), ref.lifted_generalized(
            x.astype(np.float64), np.arange(8), "soft"), rtol=1e-4)
        assert float(loss) > 0 and np.isfinite(grad.numpy()).all()
        fn = functools.partial(fn, positives="others")
    x, _ = _batch(4, p=4, k=2)
    y_k1 = np.arange(8)                             # every identity once: no positive
    loss, grad = _grad(lambda e, l: fn(e, l, margin="soft"), x, y_k1)
    assert float(loss) == 0.0 and np.isfinite(grad.numpy()).all()
    y_one = np.zeros(8, int)                        # one identity: no negative
    loss, grad = _grad(lambda e, l: fn(e, l, margin=0.3), x, y_one)
    assert float(loss) == 0.0 and np.isfinite(grad.numpy()).all()
    y_mixed = np.array([0, 0, 1, 2, 3, 3, 4, 5])    # some anchors without positive
    got = float(fn(x, y_mixed, margin="soft"))
    kwargs = {"positives": "others"} if name == "lifted_generalized" else {}
    np.testing.assert_allclose(got, getattr(ref, name)(x.astype(np.float64), y_mixed, "soft",
                                                       **kwargs), rtol=1e-4)


def test_bad_shapes_and_margin():
    with pytest.raises(ValueError, match="labels"):
        triplet.batch_hard(np.zeros((4, 2), np.float32), np.zeros(3))
    with pytest.raises(ValueError, match="margin"):
        triplet.batch_hard(np.zeros((4, 2), np.float32), np.zeros(4), margin="hard")
    with pytest.raises(ValueError, match=r"\[batch, dim\]"):
        triplet.batch_hard(np.zeros((4, 2, 1), np.float32), np.zeros(4))


def test_stats():
    x = np.array([[0.0], [1.0], [3.0], [5.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    s = {k: float(v) for k, v in triplet.triplet_stats(x, y, margin=1.5).items()}
    assert s["active"] == 0.5
    np.testing.assert_allclose(s["hardest_pos"], 1.5)
    np.testing.assert_allclose(s["hardest_neg"], 2.75)
    np.testing.assert_allclose(s["norm"], 9 / 4)
    assert s["top1"] == 0.75                        # anchor 2 is nearest to 1 (id 0)


@pytest.mark.parametrize("cls,fn", [("BatchHardLoss", "batch_hard"), ("BatchAllLoss", "batch_all"),
                                    ("LiftedLoss", "lifted"),
                                    ("LiftedGeneralizedLoss", "lifted_generalized")])
def test_keras_wrappers_in_model_fit(cls, fn):
    import keras

    from kreid.losses import keras_losses

    x, y = _batch(8, scale=0.5)
    loss_obj = getattr(keras_losses, cls)(margin=0.3)
    np.testing.assert_allclose(float(loss_obj(y, x)), float(getattr(triplet, fn)(x, y, margin=0.3)),
                               rtol=1e-6)
    clone = getattr(keras_losses, cls).from_config(loss_obj.get_config())
    assert clone.margin == 0.3
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=loss_obj)
    history = model.fit(x, y, batch_size=12, epochs=2, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("margin", [0.3, "soft"])
def test_given_positive_rptm_loss(margin):
    x, y = _batch(11, p=3, k=4, scale=0.5)
    pos = np.full(12, -1)
    for a in range(12):                      # every second row an anchor with some positive
        same = [j for j in range(12) if y[j] == y[a] and j != a]
        if a % 2 == 0:
            pos[a] = same[-1]
    got = float(triplet.given_positive(x, y, pos, margin=margin))
    np.testing.assert_allclose(got, ref.given_positive(x.astype(np.float64), y, pos, margin),
                               rtol=1e-4)
    assert float(triplet.given_positive(x, y, np.full(12, -1))) == 0.0
    # the control of #29: the same anchors, each one's hardest positive in the batch
    hard = float(triplet.given_positive(x, y, pos, margin=margin, hardest_positive=True))
    np.testing.assert_allclose(hard, ref.given_positive(x.astype(np.float64), y, pos, margin,
                                                        hardest=True), rtol=1e-4)
    assert hard >= got - 1e-6


@pytest.mark.parametrize("positives", ["all", "others"])
def test_generalised_lifted_positive_sum_of_eq7(positives):
    # Eq. (7) by hand, 1-d: identity A = {0, 1}, B = {4}; anchor 0, m = 1, hinge
    x = np.array([[0.0], [1.0], [4.0]], np.float32)
    y = np.array([0, 0, 1])
    pos = np.exp(0.0) + np.exp(1.0) if positives == "all" else np.exp(1.0)   # p = a included?
    a0 = np.log(pos) + np.log(np.exp(1 - 4.0))
    pos1 = np.exp(1.0) + np.exp(0.0) if positives == "all" else np.exp(1.0)
    a1 = np.log(pos1) + np.log(np.exp(1 - 3.0))
    # anchor 2 (B) has a positive only when p = a counts: log(e^0) + log(e^{1-4} + e^{1-3})
    a2 = np.log(np.exp(1 - 4.0) + np.exp(1 - 3.0))
    terms = [max(a0, 0), max(a1, 0)] + ([max(a2, 0)] if positives == "all" else [])
    got = float(triplet.lifted_generalized(x, y, margin=1.0, positives=positives))
    np.testing.assert_allclose(got, np.mean(terms), rtol=1e-5)
    want = ref.lifted_generalized(x.astype(np.float64), y, 1.0, positives=positives)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_lifted_one_positive_pair_per_triplet():
    """Table 1 "Lifted 1-pos.": on 3B batches of (a, p, n) only (a, p) is a positive pair;
    every other-identity image is a negative."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    y = np.array([0, 0, 1, 2, 2, 0])                      # triplets (0,1,2) and (3,4,5)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    terms = []
    for a, p in ((0, 1), (3, 4)):
        negs = [n for n in range(6) if y[n] != y[a]]
        s = np.log(sum(np.exp(1.0 - d[a, n]) + np.exp(1.0 - d[p, n]) for n in negs))
        terms.append(max(d[a, p] + s, 0.0))
    got = float(triplet.lifted(x, y, margin=1.0, pairs="triplets"))
    np.testing.assert_allclose(got, np.mean(terms), rtol=1e-5)
    # with all pairs, (0, 5) and (1, 5) count too
    assert abs(float(triplet.lifted(x, y, margin=1.0)) - got) > 1e-4
