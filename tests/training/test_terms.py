"""Loss terms are registered classes with typed options; adding one is one class (#15)."""

import numpy as np
import pytest
import tensorflow as tf

from kreid.errors import ConfigError, ConfigTypeError
from kreid.training import terms
from kreid.training.objective import Objective


def test_unknown_option_names_term_option_and_valid_ones():
    with pytest.raises(ConfigError, match=r"config\.losses\.batch_hard\.margn: unknown option.*"
                                       r"features, margin, metric, nonzero_average"):
        terms.parse_losses({"batch_hard": {"weight": 1.0, "margn": 0.3}})


@pytest.mark.parametrize("spec,match", [
    ({"ntuplet": {"n": 2.5}}, r"config\.losses\.ntuplet\.n=2\.5: expected an integer"),
    ({"batch_hard": {"margin": "hard"}}, r"batch_hard\.margin='hard': expected a number, 'soft'"),
    ({"batch_hard": {"nonzero_average": "yes"}}, r"nonzero_average='yes': expected true or false"),
    ({"triplet": {"mining": "online"}}, r"triplet\.mining='online': expected one of \('random'"),
    ({"am_softmax": {"scale": True}}, r"am_softmax\.scale=True: expected a number"),
    ({"batch_hard": {"weight": "x"}}, r"config\.losses\.batch_hard\.weight='x': expected a number"),
    ({"am_softmax": 1.0}, r"config\.losses\.am_softmax=1\.0: expected a dict of options")])
def test_wrong_option_types_are_named(spec, match):
    with pytest.raises(ConfigTypeError, match=match):
        terms.parse_losses(spec)


def test_unknown_term_and_defaults_in_one_place():
    with pytest.raises(ConfigError, match="config.losses.batch_hardd: unknown loss term"):
        terms.parse_losses({"batch_hardd": {}})
    (bh,) = terms.parse_losses({"batch_hard": {}})
    assert bh.weight == 1.0 and bh.o == {"margin": "soft", "metric": "euclidean",
                                         "nonzero_average": False, "features": "raw"}
    (t,) = terms.parse_losses({"triplet": {"margin": "0.3", "mining": "ohm"}})
    assert t.o["margin"] == 0.3 and t.sampler == "ohm"
    assert terms.parse_losses({"batch_hard": {"weight": 0.0}, "batch_all": {}})[0].name == \
        "batch_all"


def test_a_new_loss_is_one_registered_class():
    @terms.register
    class MeanNorm(terms.Term):                      # a toy term: mean embedding norm
        name = "test_mean_norm"
        options = {"power": terms.Option("float", 1.0)}

        def __call__(self, x):
            return tf.reduce_mean(tf.norm(x.global_emb, axis=1) ** self.o["power"])

    try:
        obj = Objective({"test_mean_norm": {"weight": 2.0, "power": 2},
                         "batch_hard": {"weight": 0.0}}, 3, 4)
        emb = tf.constant([[3.0, 4, 0, 0], [0, 0, 6, 8]])
        total, values = obj(emb, {"labels": tf.constant([0, 1])}, lambda t: t, 1,
                            tf.constant([0, 0], tf.int64))
        np.testing.assert_allclose(float(values["test_mean_norm"]), (25 + 100) / 2)
        np.testing.assert_allclose(float(total), 125.0)
    finally:
        del terms.TERMS["test_mean_norm"]


def _split_objective():
    return Objective({"am_softmax": {"weight": 1.0}, "batch_hard": {"weight": 0.33},
                      "attributes": {"weight": 0.25, "slice_dim": 4}}, num_classes=3,
                     embedding_dim=20, num_attributes=2)


def test_f_attr_feeds_only_the_attribute_heads_and_f_id_the_rest():
    """Sabri et al. Sec. 4.1: f_attr (M x Q dims) -> attribute heads; f_id -> identity
    classifier and batch hard. A perturbation of one part must not move the other's terms."""
    obj = _split_objective()
    obj.build()
    assert obj.attr_dim == 8 and obj.embedding_dim == 12
    assert tuple(obj.heads["am_softmax"].kernel.shape) == (12, 3)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 20)).astype(np.float32)
    batch = {"labels": tf.constant([0, 0, 1, 1, 2, 2]),
             "attributes": tf.constant(rng.integers(0, 2, (6, 2)))}

    def values(e):
        _, v = obj(tf.constant(e), batch, lambda t: t, 1, tf.constant([0, 0], tf.int64))
        return {k: float(x) for k, x in v.items()}

    base = values(emb)
    attr_moved = emb.copy()
    attr_moved[:, :8] += rng.normal(size=(6, 8)).astype(np.float32)
    id_moved = emb.copy()
    id_moved[:, 8:] += rng.normal(size=(6, 12)).astype(np.float32)
    a, i = values(attr_moved), values(id_moved)
    assert a["am_softmax"] == base["am_softmax"] and a["batch_hard"] == base["batch_hard"]
    assert a["attributes"] != base["attributes"]
    assert i["attributes"] == base["attributes"]
    assert i["am_softmax"] != base["am_softmax"] and i["batch_hard"] != base["batch_hard"]


def test_attributes_too_wide_for_the_embedding_is_named():
    with pytest.raises(ValueError, match="leave no identity feature"):
        Objective({"attributes": {"slice_dim": 16}}, 3, 32, num_attributes=2)
