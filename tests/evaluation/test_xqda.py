"""XQDA against brute-force pair sums and a problem whose answer is known in closed form."""

import numpy as np
import pytest

from kreid.evaluation import metrics, xqda
from kreid.evaluation.distances import distance_matrix


def _pairs_brute(x, labels):
    same, diff = [], []
    for i in range(len(x)):
        for j in range(len(x)):
            if i == j:
                continue
            d = x[i] - x[j]
            (same if labels[i] == labels[j] else diff).append(np.outer(d, d))
    return np.mean(same, 0), np.mean(diff, 0), len(same), len(diff)


def test_pair_covariances_equal_the_pair_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(23, 5))
    labels = rng.integers(0, 6, 23)
    got = xqda.pair_covariances(x, labels)
    want = _pairs_brute(x, labels)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
    assert got[2:] == want[2:]


def _gaussian_classes(seed, ids=400, per=6, between=(3.0, 0.0, 1.0, 0.0),
                      within=(1.0, 5.0, 1.0, 3.0)):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, 4)) * np.asarray(between)
    labels = np.repeat(np.arange(ids), per)
    x = centres[labels] + rng.normal(size=(ids * per, 4)) * np.asarray(within)
    return x, labels


def test_eigenvalues_are_the_known_variance_ratios():
    """Class centres ~ N(0, diag(b^2)), samples ~ centre + N(0, diag(w^2)): then
    Sigma_I -> 2 diag(w^2), Sigma_E -> 2 diag(w^2 + b^2), and the generalised
    eigenvalues are 1 + b^2 / w^2 along the axes: 10 and 2 for the two informative
    axes, 1 for the two others (kept only when sampling lifts them above 1)."""
    x, labels = _gaussian_classes(0)
    model = xqda.fit(x, labels, reg=0.0)
    np.testing.assert_allclose(model.eigenvalues[:2], [10.0, 2.0], rtol=0.12)
    np.testing.assert_allclose(model.eigenvalues[2:], 1.0, atol=0.05)
    assert (model.eigenvalues > 1).all() and model.W.shape[0] == 4
    assert xqda.fit(x, labels, reg=0.0, dim=2).W.shape == (4, 2)
    # never more directions than eigenvalues above 1: M stays positive semi-definite
    capped = xqda.fit(x, labels, reg=0.0, dim=4)
    assert capped.W.shape[1] == model.W.shape[1]
    assert np.linalg.eigvalsh(capped.M).min() > -1e-9
    # the kept directions are the informative axes 0 and 2
    directions = model.W / np.linalg.norm(model.W, axis=0)
    assert abs(directions[0, 0]) > 0.98 and abs(directions[2, 1]) > 0.98


def test_distance_is_the_quadratic_form_and_beats_euclidean():
    x, labels = _gaussian_classes(1)
    model = xqda.fit(x, labels)
    q, ql = _gaussian_classes(2, ids=50, per=2)
    d = model.distance(q[::2], q[1::2], chunk=7)
    i, j = 3, 11
    diff = q[::2][i] - q[1::2][j]
    want = diff @ model.W @ model.M @ model.W.T @ diff
    np.testing.assert_allclose(d[i, j], want, rtol=1e-5)
    assert (d >= 0).all()
    args = (ql[::2], ql[1::2], np.zeros(50), np.ones(50))
    euclid = metrics.evaluate(distance_matrix(q[::2], q[1::2]), *args)["mAP"]
    learned = metrics.evaluate(d, *args)["mAP"]
    assert learned > euclid + 0.07      # 0.27 against 0.17


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="two samples"):
        xqda.fit(np.eye(3), np.arange(3))
    with pytest.raises(ValueError, match="NaN"):
        xqda.fit(np.full((4, 2), np.nan), np.array([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="one label per row"):
        xqda.pair_covariances(np.eye(3), np.arange(2))
