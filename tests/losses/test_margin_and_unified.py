"""Margin softmax (Sabri et al.) and unified-view losses (Zhang et al.) against NumPy loops."""

import numpy as np
import pytest
import tensorflow as tf

from kreid.losses import margin_softmax as ms
from kreid.losses import unified
from kreid.models import heads
from kreid.training.terms import MetaPrototypeHead, in_batch_tuplets
from tests.losses import reference as ref


def _data(seed, b=12, d=16, c=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, d)).astype(np.float32)
    y = rng.integers(0, c, b)
    w = rng.normal(size=(d, c)).astype(np.float32)
    return x, y, w


@pytest.mark.parametrize("margin", [0.0, 0.3, 0.5, 3.0])
def test_am_softmax_matches_reference(margin):
    for seed in range(3):
        x, y, w = _data(seed)
        cos = tf.matmul(tf.math.l2_normalize(x, 1), tf.math.l2_normalize(w, 0))
        got = float(ms.am_softmax(cos, y, scale=16.0, margin=margin))
        want = ref.am_softmax(x.astype(np.float64), w.astype(np.float64), y, 16.0, margin)
        np.testing.assert_allclose(got, want, rtol=1e-4)


def test_angular_margin_head_and_gradients_at_cos_one():
    x, y, w = _data(1, c=3)
    head = heads.AngularMarginHead(3, scale=30.0, margin=0.5)
    head.build(x.shape)
    head.kernel.assign(np.concatenate([x[:1].T, w[:, 1:]], axis=1))   # cos = 1 for sample 0
    with tf.GradientTape() as tape:
        loss = ms.softmax_cross_entropy(head(x, y), y)
    grads = tape.gradient(loss, head.trainable_weights)
    assert np.isfinite(float(loss)) and all(np.isfinite(g.numpy()).all() for g in grads)
    inference = head(x)                                     # no labels: no margin
    np.testing.assert_allclose(inference.numpy(), 30.0 * np.clip(head.cosine(x).numpy(),
                                                                 -1 + 1e-7, 1 - 1e-7), rtol=1e-5)


def test_target_logit_decreases_with_theta_beyond_pi():
    theta = np.linspace(0.01, np.pi - 0.01, 200)
    cos = tf.constant(np.cos(theta)[:, None].astype(np.float32))
    logits = ms.angular_margin_logits(cos, tf.zeros(200, tf.int32), 1.0, 0.8).numpy()[:, 0]
    assert (np.diff(logits) < 0).all()


def test_attribute_heads_slices_and_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 64)).astype(np.float32)
    labels = rng.integers(0, 2, (6, 3))
    labels[0, 1] = -1                                      # a missing label is ignored
    head = heads.AttributeHeads(3, slice_dim=16, scale=8.0, margin=0.2)
    logits = head(x, labels)
    assert logits.shape == (6, 3, 2)
    losses = []
    for i in range(3):                                    # attribute i sees dims 16i..16i+15
        w = head.kernel.numpy()[i]
        for b in range(6):
            if labels[b, i] >= 0:
                losses.append(ref.am_softmax(x[b:b + 1, 16 * i:16 * (i + 1)].astype(np.float64),
                                             w.astype(np.float64), labels[b:b + 1, i], 8.0, 0.2))
    # Eq. (3): -(1/N) sum_i sum_k log p  -> summed over attributes, averaged over N = 6
    np.testing.assert_allclose(float(ms.attribute_loss(logits, labels)), np.sum(losses) / 6,
                               rtol=1e-4)
    with pytest.raises(ValueError, match="need a feature of >= 64"):
        heads.AttributeHeads(4, slice_dim=16)(x[:, :32])


def test_attribute_loss_eq3_by_hand():
    # all-zero logits: every 2-way cross-entropy is ln 2, so L = M ln 2 for any N
    for n, m in ((4, 3), (1, 26)):
        got = float(ms.attribute_loss(tf.zeros((n, m, 2)), np.zeros((n, m), int)))
        np.testing.assert_allclose(got, m * np.log(2), rtol=1e-6)
    labels = np.zeros((4, 3), int)
    labels[0] = -1                                 # sample 0 has no labels: still in N
    got = float(ms.attribute_loss(tf.zeros((4, 3, 2)), labels))
    np.testing.assert_allclose(got, 3 * 3 * np.log(2) / 4, rtol=1e-6)


def test_joint_losses_compose():
    x, y, w = _data(2)
    logits = tf.constant(np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32))
    from kreid.losses.triplet_family import batch_hard
    ce = float(ms.softmax_cross_entropy(logits, y))
    bh = float(batch_hard(x, y, margin="soft"))
    np.testing.assert_allclose(float(ms.am_bh(logits, x, y, gamma=0.43)), ce + 0.43 * bh,
                               rtol=1e-5)
    bh_norm = float(batch_hard(tf.math.l2_normalize(x, 1), y, margin=1.0))
    np.testing.assert_allclose(float(ms.am_bh(logits, x, y, 1.0, bh_margin=1.0,
                                              bh_features="normalized")), ce + bh_norm, rtol=1e-5)
    attr_logits = tf.zeros((12, 2, 2))
    attr_labels = np.zeros((12, 2), int)
    got = float(ms.am_bh(logits, x, y, 0.33, attr_logits=attr_logits, attr_labels=attr_labels,
                         lam=0.25))
    np.testing.assert_allclose(got, ce + 0.33 * bh + 0.25 * 2 * np.log(2), rtol=1e-5)   # M = 2


@pytest.mark.parametrize("kind", ["cosine", "euclidean"])
def test_ntuplet_matches_reference(kind):
    x, _, _ = _data(3)
    y = np.repeat(np.arange(6), 2)
    t = in_batch_tuplets(tf.constant(y), 4, 7, tf.constant([0, 0], tf.int64)).numpy()
    assert t.shape == (7, 5)
    assert all(y[r[0]] == y[r[1]] and len({y[i] for i in r[1:]}) == 4 for r in t)
    got = float(unified.ntuplet(x, t, temperature=0.5, similarity_kind=kind))
    np.testing.assert_allclose(got, ref.ntuplet(x.astype(np.float64), t, 0.5, kind), rtol=1e-4)


def test_prototypical_and_meta_match_reference():
    x, _, _ = _data(4)
    y = np.array([3, 3, 3, 1, 1, 7, 7, 7, 7, 9, 9, 2])     # identity 2 has one image
    got = float(unified.prototypical_ntuplet(x, y, temperature=0.2))
    np.testing.assert_allclose(got, ref.prototypical(x.astype(np.float64), y, 0.2), rtol=1e-4)
    loo = float(unified.prototypical_ntuplet(x, y, temperature=0.2, leave_one_out=True))
    np.testing.assert_allclose(loo, ref.prototypical(x.astype(np.float64), y, 0.2,
                                                     leave_one_out=True), rtol=1e-4)
    head = MetaPrototypeHead(reduction=8, initial_temperature=0.2)
    loss = head(x, y, training=False)

    def phi(p):
        h = p @ head.fc1.kernel.numpy() + head.fc1.bias.numpy()
        bn = head.bn
        h = (h - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon) \
            * bn.gamma.numpy() + bn.beta.numpy()
        return h @ head.fc2.kernel.numpy() + head.fc2.bias.numpy()

    want = ref.prototypical(x.astype(np.float64), y, float(head.temperature), mapping=phi)
    np.testing.assert_allclose(float(loss), want, rtol=1e-4)
    with tf.GradientTape() as tape:
        loss = head(x, y, training=True)
    grads = tape.gradient(loss, head.trainable_weights)
    names = [w.path for w, g in zip(head.trainable_weights, grads) if g is not None]
    assert any("log_tau" in n for n in names)             # the temperature is learnt


@pytest.mark.parametrize("set_distance", ["prototype", "mean"])
@pytest.mark.parametrize("margin", [0.3, "soft"])
def test_point_to_set_matches_reference(set_distance, margin):
    x, _, _ = _data(5)
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 5])
    got = float(unified.point_to_set(x, y, margin=margin, set_distance=set_distance))
    want = ref.point_to_set(x.astype(np.float64), y, margin, set_distance)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_unified_degenerate_batches_are_finite():
    x = np.zeros((6, 16), np.float32)                  # duplicate (all-zero) embeddings
    for y in (np.zeros(6, int), np.arange(6)):
        for fn in (lambda e: unified.prototypical_ntuplet(e, y, leave_one_out=True),
                   lambda e: unified.point_to_set(e, y)):
            v = tf.Variable(x)
            with tf.GradientTape() as tape:
                loss = fn(v)
            assert float(loss) == 0.0 and np.isfinite(tape.gradient(loss, v).numpy()).all()
    # prototypes over all K (the paper): a single identity has no negative -> 0; K = 1
    # anchors keep their own prototype (themselves): all-equal similarities -> ln(#classes)
    for y, want in ((np.zeros(6, int), 0.0), (np.arange(6), np.log(6))):
        for fn in (lambda e: unified.prototypical_ntuplet(e, y),
                   lambda e: unified.point_to_set_unified(e, y)):
            v = tf.Variable(x)
            with tf.GradientTape() as tape:
                loss = fn(v)
            assert np.isfinite(tape.gradient(loss, v).numpy()).all()
        np.testing.assert_allclose(float(unified.prototypical_ntuplet(x, y)), want, rtol=1e-6)


def test_bnneck_classifier():
    x, y, _ = _data(6)
    head = heads.BNNeckClassifier(5)
    logits = head(x, training=True)
    assert logits.shape == (12, 5)
    assert not head.bn.center                               # BN-neck: no shift
    loss = ms.softmax_cross_entropy(logits, y, label_smoothing=0.1)
    assert np.isfinite(float(loss))


# ------------------------------------------------ Zhang et al., from the equations by hand
def _np_cos(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def test_mpn_maps_every_sample_then_averages_eq10():
    """phi_c = 1/K sum_j phi(x_cj) (Eq. 10), not phi(mean): with phi = |.| and tau = 1,
    A = {(0,1), (0,1)}, B = {(1,1), (-1,1)}: each A anchor's loss is
    -log(e^{S+}/(e^{S+} + e^{S-})) with S+ = cos(a, (0,1)) = 1, S- = cos(a, (1,1))."""
    x = tf.constant([[0.0, 1], [0, 1], [1, 1], [-1, 1]])
    y = tf.constant([0, 0, 1, 1])
    got = unified.prototypical_ntuplet(x, y, 1.0, mapping=tf.abs)
    s_pos, s_neg = 1.0, _np_cos(np.array([0.0, 1]), np.array([1.0, 1]))
    a_loss = -np.log(np.exp(s_pos) / (np.exp(s_pos) + np.exp(s_neg)))          # 0.5574
    # B anchors: own prototype mean(|b|) = (1, 1), other (0, 1)
    b_losses = []
    for b in ([1.0, 1], [-1.0, 1]):
        sp, sn = _np_cos(np.array(b), np.array([1.0, 1])), _np_cos(np.array(b), np.array([0.0, 1]))
        b_losses.append(-np.log(np.exp(sp) / (np.exp(sp) + np.exp(sn))))
    np.testing.assert_allclose(a_loss, 0.5574, atol=1e-4)
    np.testing.assert_allclose(float(got), np.mean([a_loss, a_loss] + b_losses), rtol=1e-5)


def test_pn_tuplet_prototypes_include_the_anchor():
    """PN-tuplet, tau = 1: A = {(1,0),(0,1)}, B = {(-1,0),(0,-1)}; prototypes are the
    class means over all K samples (the paper), the anchor included."""
    x = tf.constant([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    y = tf.constant([0, 0, 1, 1])
    pa, pb = np.array([0.5, 0.5]), np.array([-0.5, -0.5])
    losses = []
    for xi, own, other in ((x[0], pa, pb), (x[1], pa, pb), (x[2], pb, pa), (x[3], pb, pa)):
        sp, sn = _np_cos(xi.numpy(), own), _np_cos(xi.numpy(), other)
        losses.append(-np.log(np.exp(sp) / (np.exp(sp) + np.exp(sn))))
    np.testing.assert_allclose(np.mean(losses), 0.2176, atol=1e-4)
    np.testing.assert_allclose(float(unified.prototypical_ntuplet(x, y, 1.0)), np.mean(losses),
                               rtol=1e-5)
    loo = float(unified.prototypical_ntuplet(x, y, 1.0, leave_one_out=True))
    assert abs(loo - 0.2176) > 0.1                                # the old reading differs


def test_ntuplet_eq6_by_hand_and_learnable_tau():
    """x_a = (1,0), x+ = (1,0), negatives (0,1), (-1,0): L = ln(1 + e^-1 + e^-2) at tau = 1."""
    x = tf.constant([[1.0, 0], [1, 0], [0, 1], [-1, 0]])
    t = [[0, 1, 2, 3]]
    np.testing.assert_allclose(float(unified.ntuplet(x, t, 1.0)),
                               np.log(1 + np.exp(-1) + np.exp(-2)), rtol=1e-6)
    np.testing.assert_allclose(float(unified.ntuplet(x, t, 0.5)),
                               np.log(1 + np.exp(-2) + np.exp(-4)), rtol=1e-6)
    from kreid.training.objective import Objective

    obj = Objective({"ntuplet": {"n": 3, "num_tuplets": 4}}, 3, 2)
    obj.build()
    (tau,) = obj.trainable_variables                       # the learnable log tau
    with tf.GradientTape() as tape:
        loss, _ = obj(x, {"labels": tf.constant([0, 0, 1, 2])}, lambda v: v, 1,
                      tf.constant([0, 0], tf.int64))
    assert float(tape.gradient(loss, tau)) != 0.0


def test_point_to_set_unified_form_honours_the_metric():
    """A = {(1,0),(2,0)}, B = {(0,1),(0,5)}, cosine, tau = 1: every anchor has S+ = 1,
    S- = 0, so L = ln(1 + e^-1); invariant to rescaling rows."""
    x = tf.constant([[1.0, 0], [2, 0], [0, 1], [0, 5]])
    y = tf.constant([0, 0, 1, 1])
    got = float(unified.point_to_set_unified(x, y, 1.0, "cosine"))
    np.testing.assert_allclose(got, np.log(1 + np.exp(-1)), rtol=1e-6)
    np.testing.assert_allclose(float(unified.point_to_set_unified(x * [[3.0], [1], [7], [1]],
                                                                  y, 1.0, "cosine")), got,
                               rtol=1e-6)
    euclid = float(unified.point_to_set_unified(x, y, 1.0, "euclidean"))
    assert abs(euclid - got) > 1e-3
    from kreid.training.terms import parse_losses
    (p2s,) = parse_losses({"point_to_set": {"form": "triplet", "metric": "euclidean"}})
    assert p2s.o["metric"] == "euclidean"


def test_ntuplet_default_is_m_equals_t():
    from kreid.training.terms import in_batch_tuplets

    y = tf.constant(np.repeat(np.arange(16), 4))            # P = 16, K = 4
    t = in_batch_tuplets(y, 16, 0, tf.constant([1, 2], tf.int64)).numpy()
    assert t.shape == (64 * 3 * 60, 17)                      # T = 11,520 (Sec. 4.2)
    yy = y.numpy()
    assert (yy[t[:, 0]] == yy[t[:, 1]]).all() and (t[:, 0] != t[:, 1]).all()
    assert all(len(set(yy[r[1:]])) == 16 for r in t[:50])


@pytest.mark.parametrize("kind,hard,tau", [("cosine", False, 0.1), ("cosine", True, 0.05),
                                           ("euclidean", False, 1.0), ("cosine", False, 1.0)])
def test_unified_triplet_against_numpy(kind, hard, tau):
    """Zhang et al.'s "Tri." in the unified form with a temperature (#29)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 6)).astype(np.float32)
    y = np.repeat(np.arange(4), 3)
    got = float(unified.triplet_unified(x, y, tau, kind, hard))
    np.testing.assert_allclose(got, ref.triplet_unified(x.astype(np.float64), y, tau, kind,
                                                        hard), rtol=1e-5)


def test_unified_triplet_edge_cases_and_its_term():
    # no temperature in the old form: with cosine in [-1, 1] a small tau sharpens it
    x = np.array([[1.0, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    y = np.array([0, 0, 1, 1])
    assert float(unified.triplet_unified(x, y, 0.05)) < float(unified.triplet_unified(x, y, 1.0))
    for labels in (np.zeros(4, int), np.arange(4)):       # one identity / K = 1: no triplet
        assert float(unified.triplet_unified(x, labels, 0.1)) == 0.0
    v = tf.Variable(np.zeros((4, 3), np.float32))          # duplicates: finite gradients
    with tf.GradientTape() as tape:
        loss = unified.triplet_unified(v, y, 0.1, "euclidean", hard=True)
    assert np.isfinite(tape.gradient(loss, v).numpy()).all()
    far = np.array([[1e4, 0], [-1e4, 0], [1e4, 1], [-1e4, 1]], np.float32)   # no overflow
    assert np.isfinite(float(unified.triplet_unified(far, y, 0.01, "euclidean")))
    from kreid.training.objective import Objective

    obj = Objective({"unified_triplet": {"weight": 1.0}}, 2, 2)
    obj.build()
    tau = obj.heads["unified_triplet"]
    _, values = obj(tf.constant(x), {"labels": tf.constant(y)}, lambda t: t, 1,
                    tf.constant([0, 0], tf.int64))
    np.testing.assert_allclose(float(values["unified_triplet"]),
                               ref.triplet_unified(x.astype(np.float64), y, 0.1), rtol=1e-5)
    assert [w.path for w in tau.trainable_weights] == ["unified_triplet_temperature/log_tau"]
