"""Loss terms: each one registered class with its typed options, its head, its sampler and its call.

A config names its loss as a weighted sum of terms, e.g. (Sabri et al. Eq. 7)::

    losses = {"am_softmax": {"weight": 1.0, "scale": 16, "margin": 0.0},
              "batch_hard": {"weight": 0.33, "margin": "soft"},
              "attributes": {"weight": 0.25, "slice_dim": 16}}

Adding a loss is one class here (plus its test): subclass :class:`Term`, give
it a ``name``, its ``options`` (name -> :class:`Option` with type and
default; an unknown option or a wrong type fails at config time, naming the
term, the option and the valid ones) and ``__call__(inputs)`` returning the
term's scalar value. What a term needs from the rest of kreid is said here,
by the term, and nothing else names it:

- ``make_head``: a Keras layer with trainable weights, built on the feature
  the term reads; ``exports_head``: the head is kept as an output of
  ``final.keras`` (a classifier a user may want);
- ``sampler``: the batch sampler it needs instead of PK batches
  (``random_triplets``, ``ohm`` or ``rptm``, :mod:`kreid.training.samplers`);
- ``reserved_dims``: leading feature dimensions the term takes for itself
  (Sabri et al.'s f_attr); every other term then reads the rest, and the
  test-time embedding is the rest;
- ``check_plan``: a check against the resolved run plan (e.g. an N-tuplet
  needs N identities per batch), run before any file is written.

One module on purpose (over the house's ~400 lines): it *is* the registry, every
term and the two layers that only terms use, readable in one place.

Distribution: ``coupled`` terms (triplets, tuplets, prototypes) see the
*global* batch gathered from all replicas; the others (the classifiers) see
the local replica batch.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Callable, ClassVar

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from kreid.errors import ConfigError, ConfigTypeError, ConfigValueError
from kreid.losses import margin_softmax as ms
from kreid.losses import memory as memory_loss
from kreid.losses import triplet_family as tfam
from kreid.losses import unified
from kreid.models import heads

TERMS: dict[str, type["Term"]] = {}


def register(cls: type["Term"]) -> type["Term"]:
    TERMS[cls.name] = cls
    return cls


@dataclasses.dataclass(frozen=True)
class Option:
    """A typed term option: ``kind`` float | int | bool | str | margin, its default and,
    for strings, the allowed values."""

    kind: str
    default: Any
    choices: tuple = ()
    doc: str = ""

    def parse(self, value, where: str):
        def fail(expected):
            raise ConfigTypeError(f"{where}={value!r}: expected {expected}")

        if self.kind == "margin":      # a hinge margin (float), "soft" (softplus) or "none"
            if isinstance(value, str):
                if value in ("soft", "none"):
                    return None if value == "none" else "soft"
                try:
                    return float(value)
                except ValueError:
                    fail("a number, 'soft' or 'none'")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                fail("a number, 'soft' or 'none'")
            return float(value)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            fail("true or false")
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    self.kind == "int" and float(value) != int(value)):
                fail(f"a{'n integer' if self.kind == 'int' else ' number'}")
            return int(value) if self.kind == "int" else float(value)
        if not isinstance(value, str) or (self.choices and value not in self.choices):
            fail(f"one of {self.choices}" if self.choices else "a string")
        return value


def margin(default="soft") -> Option:
    return Option("margin", default, doc="hinge margin, 'soft' (softplus) or 'none'")


METRIC = Option("str", "euclidean", ("euclidean", "sqeuclidean", "cosine"))


@dataclasses.dataclass
class Inputs:
    """What a term's call sees: local and global (all-gathered) embeddings and labels."""

    emb: tf.Tensor                 # [b, D] this replica's embeddings
    labels: tf.Tensor              # [b] int32
    global_emb: tf.Tensor          # [B, D] every replica's
    global_labels: tf.Tensor       # [B]
    batch: dict                    # the input batch (attributes, positive_index, ...)
    gather: Callable[[tf.Tensor], tf.Tensor]
    seed: tf.Tensor                # [2] stateless seed of this step
    training: bool = True
    reserved_emb: tf.Tensor | None = None   # the leading dims a term reserves (f_attr [b, M*Q])

class Term:
    """One weighted loss term; subclasses set ``name`` and ``options`` and implement
    ``__call__``."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Option]] = {}
    coupled: ClassVar[bool] = True
    exports_head: ClassVar[bool] = False       # final.keras keeps the head as an output

    def __init__(self, weight: float = 1.0, where: str = "config.losses", **options):
        where = f"{where}.{self.name}"
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise ConfigTypeError(f"{where}.weight={weight!r}: expected a number")
        self.weight = float(weight)
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown option; valid options of "
                              f"{self.name!r}: weight, {', '.join(sorted(self.options)) or '-'}")
        self.o = {k: spec.parse(options[k], f"{where}.{k}") if k in options else spec.default
                  for k, spec in self.options.items()}
        self.head: keras.layers.Layer | None = None

    def make_head(self, num_classes: int, embedding_dim: int, num_attributes: int):
        """The Keras layer this term trains (None: no head)."""
        return None

    def build_head(self, embedding_dim: int) -> None:
        if self.head is not None and not self.head.built:
            self.head(tf.zeros((2, embedding_dim)), tf.constant([0, 1]))

    @property
    def sampler(self) -> str | None:
        """The batch sampler this term needs instead of PK batches (``random_triplets``, ``ohm``, ``rptm``)."""
        return None

    def reserved_dims(self, num_attributes: int) -> int:
        """Leading feature dimensions this term reads alone (0: it reads the shared rest)."""
        return 0

    def check_plan(self, plan) -> None:
        """Refuse a run plan (:class:`kreid.training.plan.Plan`) this term cannot train in,
        naming the config keys; called by :func:`kreid.training.plan.resolve`."""

    def __call__(self, x: Inputs) -> tf.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{self.name}(weight={self.weight}, {self.o})"


class _TripletFamilyTerm(Term):
    fn: ClassVar[Callable]
    options = {"margin": margin(), "metric": METRIC,
               "nonzero_average": Option("bool", False),
               "features": Option("str", "raw", ("raw", "normalized"),
                                  "batch hard on raw or L2-normalised features")}

    def __call__(self, x: Inputs) -> tf.Tensor:
        feats = x.global_emb
        if self.o["features"] == "normalized":
            feats = tf.math.l2_normalize(feats, 1)
        return type(self).fn(feats, x.global_labels, margin=self.o["margin"],
                             metric=self.o["metric"],
                             nonzero_average=self.o["nonzero_average"])


@register
class BatchHard(_TripletFamilyTerm):
    """Eq. (5), Hermans et al. 2017."""
    name, fn = "batch_hard", staticmethod(tfam.batch_hard)


@register
class BatchAll(_TripletFamilyTerm):
    """Eq. (6), Hermans et al. 2017."""
    name, fn = "batch_all", staticmethod(tfam.batch_all)


@register
class Lifted(_TripletFamilyTerm):
    """The lifted embedding loss (Song et al.) as Hermans et al. write it; ``pairs:
    triplets`` on batches of random triplets is Table 1's "Lifted 1-pos." row."""
    name, fn = "lifted", staticmethod(tfam.lifted)
    options = {**_TripletFamilyTerm.options,
               "pairs": Option("str", "all", ("all", "triplets"))}

    @property
    def sampler(self):
        return "random_triplets" if self.o["pairs"] == "triplets" else None

    def check_plan(self, plan) -> None:
        _check_triplet_batch(self, plan)

    def __call__(self, x: Inputs) -> tf.Tensor:
        feats = x.global_emb
        if self.o["features"] == "normalized":
            feats = tf.math.l2_normalize(feats, 1)
        return tfam.lifted(feats, x.global_labels, margin=self.o["margin"],
                           metric=self.o["metric"], nonzero_average=self.o["nonzero_average"],
                           pairs=self.o["pairs"])


@register
class LiftedGeneralized(_TripletFamilyTerm):
    """Eq. (7), Hermans et al. 2017 (``positives``: "all" = p = 1..K as printed, "others")."""
    name, fn = "lifted_generalized", staticmethod(tfam.lifted_generalized)
    options = {**_TripletFamilyTerm.options,
               "positives": Option("str", "all", ("all", "others"))}

    def __call__(self, x: Inputs) -> tf.Tensor:
        feats = x.global_emb
        if self.o["features"] == "normalized":
            feats = tf.math.l2_normalize(feats, 1)
        return tfam.lifted_generalized(feats, x.global_labels, margin=self.o["margin"],
                                       metric=self.o["metric"],
                                       nonzero_average=self.o["nonzero_average"],
                                       positives=self.o["positives"])


@register
class Triplet(Term):
    """Vanilla triplet loss (Hermans et al. Eq. 4). ``mining``: ``random`` - B random
    triplets from the whole training set stacked into 3B images, the paper's baseline
    (Table 1 config); ``ohm`` - offline-hard-mined triplets, same layout; ``in_batch``
    (default: the run keeps PK batches for its other terms) - one random positive and
    negative per anchor of a PK batch."""

    name = "triplet"
    options = {"margin": margin(0.2), "metric": METRIC,
               "mining": Option("str", "in_batch", ("random", "ohm", "in_batch"))}

    @property
    def sampler(self):
        return {"ohm": "ohm", "random": "random_triplets"}.get(self.o["mining"])

    def check_plan(self, plan) -> None:
        _check_triplet_batch(self, plan)

    def __call__(self, x: Inputs) -> tf.Tensor:
        if self.o["mining"] in ("ohm", "random"):      # batches of consecutive (a, p, n)
            triplets = tf.reshape(tf.range(tf.shape(x.global_emb)[0]), [-1, 3])
        else:
            triplets = in_batch_triplets(x.global_labels, x.seed)
        return tfam.triplet(x.global_emb, triplets, margin=self.o["margin"],
                            metric=self.o["metric"])


@register
class AMSoftmax(Term):
    """Additive angular margin softmax (Sabri et al. Eq. 2) on the embedding."""

    name, coupled, exports_head = "am_softmax", False, True
    options = {"scale": Option("float", 16.0), "margin": Option("float", 0.0)}

    def make_head(self, num_classes, embedding_dim, num_attributes):
        return heads.AngularMarginHead(num_classes, scale=self.o["scale"],
                                       margin=self.o["margin"], name="am_head")

    def __call__(self, x: Inputs) -> tf.Tensor:
        return ms.softmax_cross_entropy(self.head(x.emb, x.labels), x.labels)


@register
class Attributes(Term):
    """Per-attribute 2-way angular-margin heads (Sabri et al. Eq. 3)."""

    name, coupled = "attributes", False
    options = {"slice_dim": Option("int", 16), "scale": Option("float", 16.0),
               "margin": Option("float", 0.0)}

    def reserved_dims(self, num_attributes: int) -> int:
        """M x Q: the leading dimensions of the feature that form f_attr (Sabri et al. 4.1)."""
        return num_attributes * self.o["slice_dim"]

    def make_head(self, num_classes, embedding_dim, num_attributes):
        if num_attributes == 0:
            raise ConfigValueError("config.losses.attributes: the dataset has no binary attributes")
        return heads.AttributeHeads(num_attributes, slice_dim=self.o["slice_dim"],
                                    scale=self.o["scale"], margin=self.o["margin"],
                                    name="attribute_heads")

    def build_head(self, embedding_dim):
        if not self.head.built:
            self.head(tf.zeros((2, embedding_dim)), tf.zeros((2, self.head.num_attributes),
                                                             tf.int32))

    def __call__(self, x: Inputs) -> tf.Tensor:
        attr = tf.cast(x.batch["attributes"], tf.int32)
        return ms.attribute_loss(self.head(x.reserved_emb, attr), attr)


@register
class BNNeckCE(Term):
    """Cross-entropy on a BN-neck classifier (Luo et al.; the unified view's classification)."""

    name, coupled, exports_head = "bnneck_ce", False, True
    options = {"label_smoothing": Option("float", 0.1),
               "bn": Option("bool", True, doc="the head's own BN-neck (false: the model "
                                              "already ends in one)")}

    def make_head(self, num_classes, embedding_dim, num_attributes):
        return heads.BNNeckClassifier(num_classes, bn=self.o["bn"], name="bnneck_classifier")

    def build_head(self, embedding_dim):
        if not self.head.built:
            self.head(tf.zeros((2, embedding_dim)), training=False)

    def __call__(self, x: Inputs) -> tf.Tensor:
        return ms.softmax_cross_entropy(self.head(x.emb, training=x.training), x.labels,
                                        self.o["label_smoothing"])


@keras.saving.register_keras_serializable(package="kreid")
class LearnableTemperature(layers.Layer):
    """tau = exp(log_tau), learnt by back-propagation: "For each loss, to automatically
    choose a suitable temperature parameter tau ... we implement this by using a
    learnable network parameter tau" (Zhang et al. Sec. 4.2). The paper gives no
    initial value; kreid starts at 0.1."""

    def __init__(self, initial: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape=None):
        self.log_tau = self.add_weight(name="log_tau", shape=(),
                                       initializer=keras.initializers.Constant(
                                           float(np.log(self.initial))))

    def call(self, *args, **kwargs):
        return tf.exp(self.log_tau)

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


SIMILARITY = Option("str", "cosine", ("cosine", "euclidean"))


class _TemperatureTerm(Term):
    """A unified-view loss with a temperature tau, learnt unless ``learn_temperature``
    is false (then fixed at ``temperature``)."""

    options = {"temperature": Option("float", 0.1, doc="initial (or fixed) tau"),
               "learn_temperature": Option("bool", True)}

    def make_head(self, num_classes, embedding_dim, num_attributes):
        if not self.o["learn_temperature"]:
            return None
        return LearnableTemperature(self.o["temperature"], name=f"{self.name}_temperature")

    @property
    def tau(self):
        return self.head(None) if self.head is not None else self.o["temperature"]


@register
class NTuplet(_TemperatureTerm):
    """N-tuplet loss (Zhang et al. Eq. 6) over in-batch tuplets; ``num_tuplets`` 0 (the
    default) is the paper's "M = T": as many tuplets as the batch has triplets."""

    name = "ntuplet"
    options = {**_TemperatureTerm.options, "n": Option("int", 16),
               "num_tuplets": Option("int", 0), "similarity": SIMILARITY}

    def check_plan(self, plan) -> None:
        if self.o["n"] > plan.batch.p:
            raise ConfigValueError(f"config.losses.ntuplet.n={self.o['n']}: an N-tuplet needs N "
                                   f"identities in the batch, config.batch.p is {plan.batch.p}")

    def __call__(self, x: Inputs) -> tf.Tensor:
        tuplets = in_batch_tuplets(x.global_labels, self.o["n"], self.o["num_tuplets"], x.seed)
        return unified.ntuplet(x.global_emb, tuplets, self.tau, self.o["similarity"])


@register
class UnifiedTriplet(_TemperatureTerm):
    """Zhang et al.'s "Tri.": the soft-margin triplet in the unified form with a learnable
    temperature, ``softplus((S(a, n) - S(a, p)) / tau)`` over every triplet of the batch
    (``hard``: batch hard), cosine similarity by default (Table 2's best Tri. + Cls.)."""

    name = "unified_triplet"
    options = {**_TemperatureTerm.options, "similarity": SIMILARITY,
               "hard": Option("bool", False, doc="batch hard instead of every triplet")}

    def __call__(self, x: Inputs) -> tf.Tensor:
        return unified.triplet_unified(x.global_emb, x.global_labels, self.tau,
                                       self.o["similarity"], self.o["hard"])


@register
class PointToSet(_TemperatureTerm):
    """Point-to-set triplet (Zhang et al.): ``form="unified"`` is the paper's two-class
    softmax with prototypes as reference nodes (learnable tau, ``metric`` similarity);
    ``"triplet"`` the distance form with a margin (``margin``, ``set_distance``)."""

    name = "point_to_set"
    options = {**_TemperatureTerm.options,
               "form": Option("str", "unified", ("unified", "triplet")),
               "metric": Option("str", "cosine", ("cosine", "euclidean")),
               "margin": margin(), "set_distance": Option("str", "prototype",
                                                          ("prototype", "mean")),
               "leave_one_out": Option("bool", False)}

    def make_head(self, num_classes, embedding_dim, num_attributes):
        return super().make_head(num_classes, embedding_dim, num_attributes) \
            if self.o["form"] == "unified" else None

    def __call__(self, x: Inputs) -> tf.Tensor:
        if self.o["form"] == "unified":
            return unified.point_to_set_unified(x.global_emb, x.global_labels, self.tau,
                                                self.o["metric"], self.o["leave_one_out"])
        return unified.point_to_set(x.global_emb, x.global_labels, margin=self.o["margin"],
                                    metric=self.o["metric"],
                                    set_distance=self.o["set_distance"])


@register
class Prototypical(_TemperatureTerm):
    """Prototypical N-tuplet loss (PN-tuplet) over the batch's class prototypes."""

    name = "prototypical"
    options = {**_TemperatureTerm.options, "similarity": SIMILARITY,
               "leave_one_out": Option("bool", False)}

    def __call__(self, x: Inputs) -> tf.Tensor:
        return unified.prototypical_ntuplet(x.global_emb, x.global_labels, self.tau,
                                            self.o["similarity"],
                                            leave_one_out=self.o["leave_one_out"])


@keras.saving.register_keras_serializable(package="kreid")
class MetaPrototypeHead(layers.Layer):
    """Meta prototypical N-tuplet head (Zhang et al., Eq. 7-10): it computes a loss, so it
    lives with the terms, not with the models.

    ``phi`` (Eq. 7, "W_2(BN(W_1(x)))", s = 8) maps every sample; the class
    prototypes average the mapped samples (Eq. 10).
    The temperature tau = exp(log_tau) is learnt. ``head(embeddings, labels)``
    returns the meta prototypical N-tuplet loss over the batch's prototypes.
    """

    def __init__(self, reduction: int = 8, initial_temperature: float = 0.1,
                 leave_one_out: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.reduction, self.initial_temperature = int(reduction), float(initial_temperature)
        self.leave_one_out = bool(leave_one_out)

    def build(self, input_shape):
        d = int(input_shape[-1])
        if d < self.reduction:
            raise ValueError(f"MetaPrototypeHead: feature dim {d} < reduction {self.reduction}")
        self.fc1 = layers.Dense(d // self.reduction, name="phi_fc1")
        self.bn = layers.BatchNormalization(name="phi_bn")
        self.fc2 = layers.Dense(d, name="phi_fc2")
        self.fc1.build(input_shape)
        self.bn.build((None, d // self.reduction))
        self.fc2.build((None, d // self.reduction))
        self.log_tau = self.add_weight(
            name="log_tau", shape=(),
            initializer=keras.initializers.Constant(float(tf.math.log(self.initial_temperature))))

    @property
    def temperature(self):
        return tf.exp(self.log_tau)

    def phi(self, x, training=None):
        return self.fc2(self.bn(self.fc1(x), training=training))

    def call(self, embeddings, labels, training=None):
        return unified.prototypical_ntuplet(embeddings, labels, temperature=self.temperature,
                                            similarity_kind="cosine",
                                            mapping=lambda p: self.phi(p, training=training),
                                            leave_one_out=self.leave_one_out)

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction,
                "initial_temperature": self.initial_temperature,
                "leave_one_out": self.leave_one_out}


@register
class MPN(Term):
    """Meta prototypical N-tuplet loss (Zhang et al. Eq. 7-10; learnable tau, phi)."""

    name = "mpn"
    options = {"reduction": Option("int", 8), "temperature": Option("float", 0.1),
               "leave_one_out": Option("bool", False)}

    def make_head(self, num_classes, embedding_dim, num_attributes):
        return MetaPrototypeHead(reduction=self.o["reduction"],
                                 initial_temperature=self.o["temperature"],
                                 leave_one_out=self.o["leave_one_out"], name="mpn_head")

    def __call__(self, x: Inputs) -> tf.Tensor:
        return self.head(x.global_emb, x.global_labels, training=x.training)


@register
class RPTM(Term):
    """Chosen (relation-preserving) positive + batch-hard negative (Ghosh et al. Eq. 8).
    ``positive: hardest`` takes each anchor's farthest same-identity image of the same
    batch instead: batch hard on RPTM's anchors and batches, the control that differs
    from RPTM in the positive only."""

    name = "rptm"
    options = {"margin": margin(), "metric": METRIC,
               "positive": Option("str", "rptm", ("rptm", "hardest"))}

    @property
    def sampler(self):
        return "rptm"

    def __call__(self, x: Inputs) -> tf.Tensor:
        # the RPTM sampler gives positions in the global batch: gather them unchanged
        positives = x.gather(tf.cast(x.batch["positive_index"], tf.int32))
        return tfam.given_positive(x.global_emb, x.global_labels, positives,
                                   margin=self.o["margin"], metric=self.o["metric"],
                                   hardest_positive=self.o["positive"] == "hardest")


@keras.saving.register_keras_serializable(package="kreid")
class ClusterMemoryHead(layers.Layer):
    """The cluster memory: one normalised centroid per pseudo-identity, not trained by
    gradients but moved by :func:`kreid.losses.memory.momentum_update` after each step.
    ``centroids``: a ``.npy`` file of the clusters' initial centroids [C, D] (written by
    the adaptation round, :mod:`kreid.adaptation`); without one the memory starts at
    random unit vectors. A checkpoint restores the memory as it was."""

    def __init__(self, num_classes: int, momentum: float = 0.2, centroids: str = "",
                 **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.momentum, self.centroids = int(num_classes), momentum, centroids

    def build(self, input_shape):
        dim = int(input_shape[-1])
        if self.centroids:
            try:
                init = np.load(self.centroids)
            except OSError as exc:
                raise ConfigValueError(f"config.losses.cluster_memory.centroids="
                                       f"{self.centroids!r}: cannot read it ({exc})") from exc
            if init.shape != (self.num_classes, dim) or not np.isfinite(init).all():
                raise ConfigValueError(
                    f"config.losses.cluster_memory.centroids={self.centroids!r}: shape "
                    f"{init.shape}, expected ({self.num_classes}, {dim}) finite values (one "
                    "centroid per training identity, in label order)")
            init = init / np.maximum(np.linalg.norm(init, axis=1, keepdims=True), 1e-12)
            initializer = keras.initializers.Constant(init.astype(np.float32))
        else:
            initializer = keras.initializers.RandomNormal(seed=0)
        self.memory = self.add_weight(name="memory", shape=(self.num_classes, dim),
                                      initializer=initializer, trainable=False)
        if not self.centroids:
            self.memory.assign(tf.math.l2_normalize(self.memory, 1))

    def call(self, emb, labels, temperature: float = 0.05, training: bool = False):
        loss = memory_loss.cluster_nce(emb, labels, self.memory, temperature)
        if training:
            with tf.control_dependencies([loss]):
                self.memory.assign(memory_loss.momentum_update(self.memory, emb, labels,
                                                               self.momentum))
        return loss

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "momentum": self.momentum, "centroids": self.centroids}


@register
class ClusterMemory(Term):
    """Cluster-memory contrastive loss on pseudo-identities (Dai et al. 2021, ClusterNCE;
    kreid's domain adaptation): temperature 0.05 and momentum 0.2 as in the authors'
    code; ``centroids`` the round's initial cluster centres (a ``.npy`` file)."""

    name = "cluster_memory"
    options = {"temperature": Option("float", 0.05), "momentum": Option("float", 0.2),
               "centroids": Option("str", "", doc="initial centroids [C, D] (.npy)")}

    def check_plan(self, plan) -> None:
        if not 0.0 <= self.o["momentum"] < 1.0 or self.o["temperature"] <= 0:
            raise ConfigValueError(
                f"config.losses.cluster_memory: momentum={self.o['momentum']} must be in "
                f"[0, 1) and temperature={self.o['temperature']} positive")

    def make_head(self, num_classes, embedding_dim, num_attributes):
        return ClusterMemoryHead(num_classes, self.o["momentum"], self.o["centroids"],
                                 name="cluster_memory")

    def build_head(self, embedding_dim):
        if not self.head.built:
            self.head.build((None, embedding_dim))

    def __call__(self, x: Inputs) -> tf.Tensor:
        return self.head(x.global_emb, x.global_labels, temperature=self.o["temperature"],
                         training=x.training)


def _check_triplet_batch(term: Term, plan) -> None:
    """A triplet sampler's batch holds P x K // 3 triplets: at least one."""
    if term.sampler and plan.batch.p * plan.batch.k < 3:
        raise ConfigValueError(f"config.batch: {term.name} draws (P x K) // 3 triplets per "
                               f"batch, and P x K = {plan.batch.p * plan.batch.k} gives none")


def parse_losses(losses: dict, where: str = "config.losses") -> list[Term]:
    """``{"name": {"weight": w, **options}}`` -> terms (zero-weight ones dropped);
    unknown names, unknown options and wrong types are refused, named (``where``: the
    config key the losses come from)."""
    if not losses:
        raise ConfigValueError(f"{where} is empty: name at least one loss term")
    if not hasattr(losses, "items"):
        raise ConfigTypeError(f"{where}={losses!r}: expected a dict of terms "
                              "(e.g. {batch_hard: {weight: 1.0}})")
    terms = []
    for name, spec in dict(losses).items():
        if name not in TERMS:
            raise ConfigError(f"{where}.{name}: unknown loss term; known: {', '.join(TERMS)}")
        if spec is not None and not hasattr(spec, "items"):
            raise ConfigTypeError(f"{where}.{name}={spec!r}: expected a dict of options "
                                  "(e.g. {weight: 1.0})")
        spec = dict(spec or {})
        if "where" in spec:
            raise ConfigError(f"{where}.{name}.where: unknown option")
        term = TERMS[name](where=where, **spec)
        if term.weight:
            terms.append(term)
    return terms


def in_batch_triplets(labels: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """For every anchor with a positive and a negative: one random positive and negative."""
    labels = tf.reshape(labels, [-1])
    b = tf.shape(labels)[0]
    same = tf.equal(labels[:, None], labels[None, :]) & ~tf.eye(b, dtype=tf.bool)
    diff = ~tf.equal(labels[:, None], labels[None, :])
    noise = tf.random.stateless_uniform([2, b, b], seed)
    pos = tf.argmax(tf.where(same, noise[0], -1.0), axis=1, output_type=tf.int32)
    neg = tf.argmax(tf.where(diff, noise[1], -1.0), axis=1, output_type=tf.int32)
    ok = tf.reduce_any(same, 1) & tf.reduce_any(diff, 1)
    anchors = tf.boolean_mask(tf.range(b), ok)
    return tf.stack([anchors, tf.boolean_mask(pos, ok), tf.boolean_mask(neg, ok)], axis=1)


def in_batch_tuplets(labels: tf.Tensor, n: int, num: int, seed: tf.Tensor) -> tf.Tensor:
    """``num`` tuplets (anchor, positive, n-1 negatives of distinct identities) from the
    batch; ``num`` 0: as many as the batch has triplets (Zhang et al. "M = T",
    sum over anchors of #positives x #negatives: 11,520 for P=16, K=4)."""
    labels = tf.reshape(labels, [-1])
    b = tf.shape(labels)[0]
    classes, cls_of = tf.unique(labels)
    c = tf.shape(classes)[0]
    same = tf.equal(labels[:, None], labels[None, :]) & ~tf.eye(b, dtype=tf.bool)
    has_pos = tf.reduce_any(same, 1)
    if not num:
        pos_count = tf.reduce_sum(tf.cast(same, tf.int32), 1)
        neg_count = b - 1 - pos_count
        num = tf.reduce_sum(pos_count * neg_count)
    noise = tf.random.stateless_uniform([4, num, b], seed)
    anchors = tf.argmax(tf.where(has_pos[None], noise[0], -1.0), 1, output_type=tf.int32)
    pos = tf.argmax(tf.where(tf.gather(same, anchors), noise[1], -1.0), 1, output_type=tf.int32)
    # n-1 other classes per tuplet: top-(n-1) of random scores over classes != anchor's
    cls_noise = tf.random.stateless_uniform([num, c], seed + 1)
    own = tf.one_hot(tf.gather(cls_of, anchors), c, on_value=True, off_value=False)
    _, other = tf.math.top_k(tf.where(own, -1.0, cls_noise), k=n - 1)
    member = tf.equal(cls_of[None, None, :], other[:, :, None])             # [num, n-1, b]
    pick_noise = tf.random.stateless_uniform([num, n - 1, b], seed + 2)
    negs = tf.argmax(tf.where(member, pick_noise, -1.0), 2, output_type=tf.int32)
    return tf.concat([anchors[:, None], pos[:, None], negs], axis=1)
