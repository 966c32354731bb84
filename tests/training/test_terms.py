"""Loss terms are registered classes with typed options; adding one is one class (#15)."""

import keras
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


@keras.saving.register_keras_serializable(package="kreid_test")
class _Scale(keras.layers.Layer):
    """A toy head: one trainable scale on the embedding."""

    def build(self, input_shape):
        self.s = self.add_weight(name="s", shape=(), initializer="ones")

    def call(self, emb, labels=None):
        return self.s * emb


def test_a_new_loss_is_one_registered_class(synthetic_root, tmp_path):
    """A term registered here, and nothing else, trains through the real trainer: its
    options, its head (exported to final.keras), its plan check; the embedding model
    is saved (#25)."""
    import json

    from kreid.errors import ConfigValueError
    from kreid.models import load_model
    from kreid.training.config import base_config
    from kreid.training.trainer import Trainer

    @terms.register
    class ScaledNorm(terms.Term):                # a toy term: mean (scaled) embedding norm
        name = "test_scaled_norm"
        options = {"power": terms.Option("float", 1.0)}
        exports_head = True

        def make_head(self, num_classes, embedding_dim, num_attributes):
            return _Scale(name="scale_head")

        def check_plan(self, plan):
            if plan.batch.k < 2:
                raise ConfigValueError("config.batch.k: test_scaled_norm needs K >= 2")

        def __call__(self, x):
            return tf.reduce_mean(tf.norm(self.head(x.global_emb), axis=1) ** self.o["power"])

    try:
        c = base_config()
        c.dataset.root = synthetic_root
        c.model.name, c.model.embedding_dim, c.image_size = "mobilenet_edge", 16, (64, 32)
        c.batch.p, c.batch.k = 4, 2
        c.losses = {"test_scaled_norm": {"weight": 0.5, "power": 2},
                    "batch_hard": {"weight": 1.0}}
        c.total_steps, c.log_every, c.checkpoint_every = 3, 1, 0
        c.final_eval.enabled = False
        result = Trainer(c, str(tmp_path / "run"), progress=False).run()
        lines = [json.loads(x) for x in open(tmp_path / "run" / "log.jsonl")]
        assert [x["step"] for x in lines] == [1, 2, 3]
        assert all(np.isfinite(x["loss/test_scaled_norm"]) for x in lines)
        total = [x["loss/total"] for x in lines]
        np.testing.assert_allclose(total, [0.5 * x["loss/test_scaled_norm"] + x["loss/batch_hard"]
                                           for x in lines], rtol=1e-5)
        assert result.embedding_path == str(tmp_path / "run" / "embedding.keras")
        assert load_model(result.embedding_path).output.shape[-1] == 16
        final = load_model(str(tmp_path / "run" / "final.keras"))
        assert sorted(final.output) == ["embeddings", "test_scaled_norm"]
        c.batch.k = 1
        with pytest.raises(ConfigValueError, match="test_scaled_norm needs K >= 2"):
            Trainer(c, str(tmp_path / "refused"), progress=False)
        assert not (tmp_path / "refused").exists()
    finally:
        del terms.TERMS["test_scaled_norm"]


def test_the_trainer_objective_samplers_and_artifacts_name_no_term():
    """What a term needs is the term's own (attributes and hooks): the rest of the
    training package never names a registered term."""
    import re

    import os

    import kreid.training as pkg
    from kreid.training.config import base_config
    from kreid.training.samplers import SAMPLERS

    folder = os.path.dirname(pkg.__file__)
    for module in ("trainer.py", "objective.py", "artifacts.py", "samplers.py", "plan.py"):
        source = open(os.path.join(folder, module)).read()
        code = re.sub(r'""".*?"""|#[^\n]*', "", source, flags=re.S)     # docstrings, comments
        # a sampler and its config group may share their name with the term that asks for
        # them (rptm): those are the sampler's names
        others = set(SAMPLERS) | set(base_config()) if module in ("samplers.py", "plan.py") \
            else set()
        named = [n for n in terms.TERMS if n not in others and re.search(rf"[\"']{n}[\"']", code)]
        assert not named, f"{module} names the terms {named}"


def _split_objective():
    return Objective({"am_softmax": {"weight": 1.0}, "batch_hard": {"weight": 0.33},
                      "attributes": {"weight": 0.25, "slice_dim": 4}}, num_classes=3,
                     embedding_dim=20, num_attributes=2)


def test_f_attr_feeds_only_the_attribute_heads_and_f_id_the_rest():
    """Sabri et al. Sec. 4.1: f_attr (M x Q dims) -> attribute heads; f_id -> identity
    classifier and batch hard. A perturbation of one part must not move the other's terms."""
    obj = _split_objective()
    obj.build()
    assert obj.reserved_dim == 8 and obj.embedding_dim == 12
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
