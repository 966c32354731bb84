"""The objective: the weighted sum of a stage's terms, their heads, the reserved feature
slice and the heads final.keras keeps (kreid.training.objective)."""

import numpy as np
import pytest
import tensorflow as tf

from kreid.errors import ConfigValueError
from kreid.training import plan as plan_
from kreid.training.objective import Objective
from tests.losses import reference as ref

SEED = tf.constant([0, 0], tf.int64)


def _batch(rng, n_ids=3, k=2, dim=6):
    labels = np.repeat(np.arange(n_ids), k)
    return rng.normal(size=(n_ids * k, dim)).astype(np.float32), labels


def test_weighted_sum_against_numpy_and_replica_division():
    rng = np.random.default_rng(0)
    emb, labels = _batch(rng)
    obj = Objective({"batch_hard": {"weight": 0.5, "margin": 0.3},
                     "batch_all": {"weight": 2.0, "margin": "soft"}}, 3, 6)
    total, values = obj(tf.constant(emb), {"labels": tf.constant(labels)}, lambda t: t, 2, SEED)
    bh = ref.batch_hard(emb.astype(np.float64), labels, 0.3)
    ba = ref.batch_all(emb.astype(np.float64), labels, "soft")
    np.testing.assert_allclose(float(values["batch_hard"]), bh, rtol=1e-5)
    np.testing.assert_allclose(float(values["batch_all"]), ba, rtol=1e-5)
    # each replica's share: the replicas' gradients are summed
    np.testing.assert_allclose(float(total), (0.5 * bh + 2.0 * ba) / 2, rtol=1e-5)


def test_plan_terms_are_copied_so_a_plan_builds_many_objectives():
    p = plan_.resolve({"losses": {"am_softmax": {}, "batch_hard": {}}})
    first = Objective(p.stages[0].terms, 5, 8)
    second = Objective(p.stages[0].terms, 5, 8)
    assert first.heads["am_softmax"] is not second.heads["am_softmax"]
    assert all(t.head is None for t in p.stages[0].terms)         # the plan is untouched
    # stages share a head by term name
    shared = Objective(p.stages[0].terms, 5, 8, shared_heads=first.heads)
    assert shared.heads["am_softmax"] is first.heads["am_softmax"]


def test_exported_heads_are_the_terms_that_say_so():
    obj = Objective({"am_softmax": {}, "mpn": {}, "batch_hard": {}}, 5, 16)
    assert sorted(obj.heads) == ["am_softmax", "mpn"]
    assert sorted(obj.exported_heads) == ["am_softmax"]      # the classifier, not phi/tau


def test_a_reserving_term_takes_the_leading_dims_and_the_rest_reads_f_id():
    obj = Objective({"attributes": {"slice_dim": 3}, "am_softmax": {}}, 4, 10,
                    num_attributes=2)
    obj.build()
    assert obj.reserved_dim == 6 and obj.embedding_dim == 4
    assert obj.feature_dim(obj.terms[0]) == 6 and obj.feature_dim(obj.terms[1]) == 4
    assert tuple(obj.heads["am_softmax"].kernel.shape) == (4, 4)
    # no reserving term: the whole feature is f_id
    plain = Objective({"am_softmax": {}}, 4, 10)
    assert plain.reserved_dim == 0 and plain.embedding_dim == 10


def test_two_reserving_terms_and_a_too_wide_slice_are_refused():
    from kreid.training import terms

    @terms.register
    class Reserving(terms.Term):
        name = "test_reserving"

        def reserved_dims(self, num_attributes):
            return 2

        def __call__(self, x):
            return tf.reduce_mean(x.reserved_emb)

    try:
        with pytest.raises(ConfigValueError, match="attributes and test_reserving both reserve"):
            Objective({"attributes": {"slice_dim": 1}, "test_reserving": {}}, 3, 8,
                      num_attributes=2)
        with pytest.raises(ConfigValueError, match=r"config.losses.test_reserving: it reserves "
                                                   r"2 dims .* leave no identity feature"):
            Objective({"test_reserving": {}}, 3, 2)
    finally:
        del terms.TERMS["test_reserving"]
