"""Learning-rate schedules of the papers, as pure functions of the step.

* ``exponential``: Eq. (9) of Hermans et al. 2017 - constant eps0 until t0,
  then eps0 * 0.001^((t - t0) / (t1 - t0)) until t1 (held after t1); Adam's
  beta1 switches from 0.9 to 0.5 at t0 (:func:`adam_beta1`). ``warmup_steps``
  (default 0: the paper's schedule) adds a linear warm-up from ``warmup_from``
  to eps0, a kreid option for fine-tuning pretrained backbones (Luo et al.'s
  BoT baseline warms Adam up over its first 10 epochs); it must end before t0.
* ``warmup_step``: linear warm-up from ``warmup_from`` to eps0 over
  ``warmup_steps``, then x``gamma`` at each of ``milestones`` (Sabri et al.:
  1e-5 -> 1e-3 over 20 epochs, x0.1 at epochs 90 and 130).
* ``step``: x``gamma`` every ``every`` steps (RPTM's SGD: x0.1 every 20 epochs).
* ``constant``.

Being functions of the step, a resumed run continues exactly where it
stopped: the schedule position is the restored step.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

KINDS = ("constant", "exponential", "warmup_step", "step")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    kind: str = "constant"
    base_lr: float = 1e-3
    t0: int = 0                       # exponential: decay start
    t1: int = 1                       # exponential: decay end
    warmup_steps: int = 0
    warmup_from: float = 1e-5
    milestones: Sequence[int] = ()
    gamma: float = 0.1
    every: int = 0                    # step: decay period
    beta1_switch: bool = True         # exponential: Adam beta1 0.9 -> 0.5 at t0
    offset: int = 0                   # steps before this stage on the same schedule: a
    #                                   later stage continues an earlier one's curve


def check(config: ScheduleConfig) -> ScheduleConfig:
    """``config`` if it describes a schedule, else a ValueError saying why (plain Python:
    checking a config must not start TensorFlow's runtime)."""
    if config.kind not in KINDS:
        raise ValueError(f"schedule kind must be one of {KINDS}, got {config.kind!r}")
    if config.kind == "exponential":
        if config.t1 <= config.t0:
            raise ValueError(f"exponential schedule needs t1 > t0 (t0={config.t0}, "
                             f"t1={config.t1})")
        if config.warmup_steps > config.t0:
            raise ValueError(f"exponential schedule: warmup_steps ({config.warmup_steps}) "
                             f"must not exceed t0 ({config.t0})")
    if config.kind == "step" and config.every <= 0:
        raise ValueError("step schedule needs every > 0")
    if config.offset < 0:
        raise ValueError(f"schedule offset must be >= 0, got {config.offset}")
    return config


def learning_rate(config: ScheduleConfig, step):
    """The learning rate at ``step`` (works on Python numbers and tensors)."""
    kind = check(config).kind
    step = tf.cast(step, tf.float32) + float(config.offset)
    base = tf.constant(config.base_lr, tf.float32)
    if kind == "constant":
        return base
    if kind == "exponential":
        frac = tf.clip_by_value((step - config.t0) / float(config.t1 - config.t0), 0.0, 1.0)
        return _warmup(config, step, base * tf.pow(0.001, frac))
    if kind == "warmup_step":
        drops = sum(tf.cast(step >= m, tf.float32) for m in config.milestones) \
            if config.milestones else tf.constant(0.0)
        return _warmup(config, step, base * tf.pow(config.gamma, drops))
    return base * tf.pow(config.gamma, tf.floor(step / float(config.every)))


def _warmup(config: ScheduleConfig, step, lr):
    """``lr`` with its first ``warmup_steps`` replaced by a line from ``warmup_from`` to eps0."""
    if not config.warmup_steps:
        return lr
    w = tf.minimum(step / float(config.warmup_steps), 1.0)
    warm = config.warmup_from + (config.base_lr - config.warmup_from) * w
    return tf.where(step < config.warmup_steps, warm, lr)


def adam_beta1(config: ScheduleConfig, step: int) -> float:
    """Adam's beta1 at ``step``: 0.5 from t0 on under the paper's schedule, else 0.9."""
    if config.kind == "exponential" and config.beta1_switch and \
            step + config.offset >= config.t0:
        return 0.5
    return 0.9


@keras.saving.register_keras_serializable(package="kreid")
class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """A :class:`ScheduleConfig` as a Keras learning-rate schedule."""

    def __init__(self, **config):
        self.config = ScheduleConfig(**config)

    def __call__(self, step):
        return learning_rate(self.config, step)

    def get_config(self):
        d = dataclasses.asdict(self.config)
        d["milestones"] = list(d["milestones"])
        return d


def sample(config: ScheduleConfig, steps: Sequence[int]) -> np.ndarray:
    return np.array([float(learning_rate(config, s)) for s in steps])


# ---------------------------------------------------------------------- the optimizer
OPTIMIZERS = ("adam", "sgd", "adadelta")


def make_optimizer(optimizer, schedule: ScheduleConfig):
    """The Keras optimizer of a :class:`kreid.training.plan.OptimizerPlan` on ``schedule``;
    Adam's beta1 is a variable the trainer sets every step (:func:`beta1_variable`)."""
    lr = Schedule(**dataclasses.asdict(schedule))
    decay = optimizer.weight_decay or None
    if optimizer.name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                                     weight_decay=decay,
                                     name="optimizer")     # fixed: checkpoint keys are paths
    if optimizer.name == "adadelta":    # Hermans et al.'s IDE (R) baseline (Sec. 4.5)
        return keras.optimizers.Adadelta(learning_rate=lr, rho=0.95, epsilon=1e-7,
                                         weight_decay=decay, name="optimizer")
    if optimizer.name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=optimizer.momentum,
                                    nesterov=optimizer.nesterov, weight_decay=decay,
                                    name="optimizer")
    raise ValueError(f"config.optimizer.name must be one of {OPTIMIZERS}, "
                     f"got {optimizer.name!r}")


def beta1_variable(optimizer, schedule: ScheduleConfig):
    """Make ``optimizer``'s beta1 a variable (Eq. 9's switch: the trainer assigns
    :func:`adam_beta1` before every step, and the compiled step reads it); returns it,
    or None for an optimizer without beta1."""
    if getattr(optimizer, "beta_1", None) is None:
        return None
    optimizer.beta_1 = tf.Variable(adam_beta1(schedule, 0), trainable=False, dtype=tf.float32)
    return optimizer.beta_1
