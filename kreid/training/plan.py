"""The run plan: a config resolved once, at start, into frozen typed objects.

:func:`resolve` reads a config (``configs/*.py``, overridden on the command
line) over :func:`kreid.training.config.base_config`, the one place every
default lives, and returns a :class:`Plan`. Everything downstream (the
trainer, the sampler factory, the demo, the reproduction driver) reads the
plan, never the ConfigDict: no call site holds a default of its own.

A key kreid does not know, a value of the wrong type, a value outside its
choices and an impossible combination (two stages that need different batch
samplers, an N-tuplet wider than the batch's identities, a schedule whose
decay ends before it starts) fail here, naming the key, before the trainer
writes any file. Loss terms are parsed here too (:mod:`kreid.training.terms`):
a stage carries its terms, which carry their options, sampler and checks.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import types
from typing import Any, Mapping

from kreid.data.augment import TTA_MODES, AugmentConfig
from kreid.data.sampler import SHORT_POLICIES
from kreid.errors import ConfigError, ConfigTypeError, ConfigValueError
from kreid.evaluation.protocols import PROTOCOLS
from kreid.losses.distances import METRICS
from kreid.mining.rptm import LAYOUTS, SELECTION_MODES, SELECTION_SIDES
from kreid.training import config as base
from kreid.training.distribute import STRATEGIES
from kreid.training.precision import PRECISIONS
from kreid.training.schedules import KINDS, OPTIMIZERS, ScheduleConfig, check
from kreid.training.terms import Term, parse_losses
from kreid_edge.preprocessing import PREPROCESSING

UNITS = ("step", "epoch")
# keys whose value is free-form (a dataset's or a model's own arguments, loss terms; the
# stages are read one by one over base.stage_defaults())
FREE_FORM = ("dataset.options", "model.kwargs", "losses", "stages", "adapt.target.options",
             "adapt.losses")


# ------------------------------------------------------------------------ the plan
@dataclasses.dataclass(frozen=True)
class DatasetPlan:
    name: str
    root: str
    options: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class ValidationPlan:
    holdout_ids: int           # 0: no validation split
    every: int                 # score it every N steps (0: never during training)
    protocol: str
    split_seed: int            # resolved: config.seed when the config says -1


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    name: str
    embedding_dim: int
    kwargs: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    p: int
    k: int
    short: str                 # an identity with fewer than K images: replicate | error
    camera_balanced: bool


@dataclasses.dataclass(frozen=True)
class OptimizerPlan:
    name: str
    weight_decay: float
    momentum: float
    nesterov: bool


@dataclasses.dataclass(frozen=True)
class RPTMPlan:
    mode: str
    tau: float
    side: str
    layout: str
    with_rotation: bool
    workers: int
    cache_dir: str             # "" = <workdir>/rptm_cache


@dataclasses.dataclass(frozen=True)
class OHMPlan:
    every: int
    identities: int


@dataclasses.dataclass(frozen=True)
class QATPlan:
    steps: int                 # 0: no quantization-aware stage
    base_lr: float
    calibration_images: int
    ranges: str                # the initial activation ranges (kreid.export.ranges method)


@dataclasses.dataclass(frozen=True)
class FinalEvalPlan:
    enabled: bool
    tta: str
    protocol: str
    metric: str
    rerank: bool


@dataclasses.dataclass(frozen=True)
class AdaptPlan:
    """Domain adaptation (:mod:`kreid.adaptation`); read by ``bin/adapt.py`` only."""

    target: DatasetPlan        # name "" = not configured
    rounds: int
    epochs: float              # passes over a round's clustered crops
    steps: int                 # training steps per round (0: from epochs)
    base_lr: float
    eps: float | str           # a Jaccard distance, or "auto" (config 0: MMT's rho rule)
    rho: float
    min_samples: int
    k1: int
    k2: int
    losses: Mapping[str, Any]  # the round's terms besides the memory
    memory: Mapping[str, Any]  # cluster_memory's weight, temperature, momentum
    labels: str                # clusters | oracle


@dataclasses.dataclass(frozen=True)
class DistributionPlan:
    strategy: str
    devices: tuple[str, ...]
    sync_bn: bool


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """One training stage: its length (in ``unit``), its loss terms, what it freezes and
    its learning-rate schedule (``schedule`` with times in ``schedule_unit``)."""

    steps: float               # an integer in steps; epochs may be fractional
    unit: str
    terms: tuple[Term, ...]
    freeze_backbone: bool
    freeze_model: bool
    schedule: ScheduleConfig
    schedule_unit: str
    qat: bool = False          # trains the fake-quantized twin (kreid.models.qat)

    def num_steps(self, steps_per_epoch: int) -> int:
        return int(self.steps * (steps_per_epoch if self.unit == "epoch" else 1))

    def schedule_in_steps(self, steps_per_epoch: int) -> ScheduleConfig:
        """The schedule with its times in steps (epochs, possibly fractional, floored)."""
        if self.schedule_unit != "epoch":
            return self.schedule
        s, n = self.schedule, steps_per_epoch
        return dataclasses.replace(
            s, t0=int(s.t0 * n), t1=int(s.t1 * n), warmup_steps=int(s.warmup_steps * n),
            every=int(s.every * n), milestones=tuple(int(m * n) for m in s.milestones),
            offset=int(s.offset * n))


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved run. ``config`` is the merged config as plain data (``config.json``)."""

    seed: int
    deterministic: bool
    precision: str             # as configured; the trainer resolves "auto" on its hardware
    dataset: DatasetPlan
    skip_corrupt: bool
    validation: ValidationPlan
    model: ModelPlan
    init_from: str             # "" or a saved kreid model whose weights start the run
    image_size: tuple[int, int]
    preprocessing: str         # "" = the model's own (kreid.models.preprocessing)
    augment: AugmentConfig
    batch: BatchPlan
    stages: tuple[StagePlan, ...]
    sampler: str               # "pk" or what the terms need: random_triplets | ohm | rptm
    optimizer: OptimizerPlan
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int
    histogram_every: int
    distribution: DistributionPlan
    rptm: RPTMPlan
    ohm: OHMPlan
    qat: QATPlan
    final_eval: FinalEvalPlan
    adapt: AdaptPlan
    config: Mapping[str, Any]

    @property
    def terms(self) -> tuple[Term, ...]:
        """Every stage's terms, in order."""
        return tuple(t for s in self.stages for t in s.terms)


# ------------------------------------------------------------------ typed readers
def _fail_type(key: str, value, expected: str):
    raise ConfigTypeError(f"config.{key}={value!r}: expected {expected}")


def _int(value, key: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or float(value) != int(value):
        _fail_type(key, value, "an integer")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigValueError(f"config.{key}={value}: must be at least {minimum}")
    return value


def _float(value, key: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value):
        _fail_type(key, value, "a finite number")
    value = float(value)
    if minimum is not None and value < minimum:
        raise ConfigValueError(f"config.{key}={value}: must be at least {minimum}")
    return value


def _bool(value, key: str) -> bool:
    if not isinstance(value, bool):
        _fail_type(key, value, "true or false")
    return value


def _str(value, key: str, choices: tuple = ()) -> str:
    if not isinstance(value, str):
        _fail_type(key, value, f"one of {', '.join(choices)}" if choices else "a string")
    if choices and value not in choices:
        raise ConfigValueError(f"config.{key}={value!r}: choose one of {', '.join(choices)}")
    return value


def _plain(value):
    """ConfigDicts, FrozenConfigDicts and lists as plain dicts, lists and values."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _merge(defaults: dict, given: dict, where: str, free: tuple = FREE_FORM) -> dict:
    """``given`` over ``defaults``; a key ``defaults`` lacks fails, named with the valid
    ones (the ``free`` groups are taken as given)."""
    out = dict(defaults)
    for key, value in given.items():
        path = f"{where}.{key}" if where else key
        if key not in defaults:
            valid = ", ".join(sorted(defaults))
            raise ConfigError(f"config.{path}: unknown key; valid keys"
                              f"{' of config.' + where if where else ''}: {valid}")
        if isinstance(defaults[key], dict) and path not in free:
            if not isinstance(value, dict):
                _fail_type(path, value, "a dict of " + ", ".join(sorted(defaults[key])))
            out[key] = _merge(defaults[key], value, path)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------ resolve
def resolve(config) -> Plan:
    """The :class:`Plan` of ``config`` (a ConfigDict or a dict), or an error naming the
    key: unknown keys, wrong types, values outside their choices, impossible
    combinations. Reads no file and writes none."""
    if isinstance(config, Plan):
        return config
    c = _merge(_plain(base.base_config()), _plain(config), "")
    seed = _int(c["seed"], "seed")
    batch = BatchPlan(_int(c["batch"]["p"], "batch.p", 1), _int(c["batch"]["k"], "batch.k", 1),
                      _str(c["batch"]["short"], "batch.short", SHORT_POLICIES),
                      _bool(c["batch"]["camera_balanced"], "batch.camera_balanced"))
    qat = _qat(c["qat"])
    stages = _stages(c)
    if qat.steps:
        stages = (*stages, _qat_stage(qat, stages[-1]))
    plan = Plan(
        seed=seed,
        deterministic=_bool(c["deterministic"], "deterministic"),
        precision=_str(c["precision"], "precision", PRECISIONS),
        dataset=_dataset(c["dataset"]),
        skip_corrupt=_bool(c["skip_corrupt"], "skip_corrupt"),
        validation=_validation(c["validation"], seed),
        model=_model(c["model"]),
        init_from=_init_from(c["init_from"]),
        image_size=_image_size(c["image_size"]),
        preprocessing=_str(c["preprocessing"], "preprocessing",
                           ("", *PREPROCESSING)),
        augment=_augment(c["augment"]),
        batch=batch,
        stages=stages,
        sampler=_sampler(stages),
        optimizer=_optimizer(c["optimizer"]),
        checkpoint_every=_int(c["checkpoint_every"], "checkpoint_every", 0),
        keep_checkpoints=_int(c["keep_checkpoints"], "keep_checkpoints", 0),
        log_every=_int(c["log_every"], "log_every", 1),
        histogram_every=_int(c["histogram_every"], "histogram_every", 0),
        distribution=_distribution(c["distribution"]),
        rptm=_rptm(c["rptm"]),
        ohm=OHMPlan(_int(c["ohm"]["every"], "ohm.every", 1),
                    _int(c["ohm"]["identities"], "ohm.identities", 2)),
        qat=qat,
        final_eval=_final_eval(c["final_eval"]),
        adapt=_adapt(c["adapt"]),
        config=types.MappingProxyType(c))
    for stage in plan.stages:          # what a term needs of the rest of the plan
        for term in stage.terms:
            term.check_plan(plan)
    return plan


def _dataset(d: dict) -> DatasetPlan:
    from kreid.data import datasets

    options = d["options"]
    if not isinstance(options, dict):
        _fail_type("dataset.options", options, "a dict of the loader's options")
    return DatasetPlan(_str(d["name"], "dataset.name", tuple(datasets.names())),
                       _str(d["root"], "dataset.root"), types.MappingProxyType(dict(options)))


def _validation(v: dict, seed: int) -> ValidationPlan:
    split_seed = _int(v["split_seed"], "validation.split_seed", -1)
    return ValidationPlan(_int(v["holdout_ids"], "validation.holdout_ids", 0),
                          _int(v["every"], "validation.every", 0),
                          _str(v["protocol"], "validation.protocol", PROTOCOLS),
                          seed if split_seed < 0 else split_seed)


def _model(m: dict) -> ModelPlan:
    from kreid import models

    kwargs = m["kwargs"]
    if not isinstance(kwargs, dict):
        _fail_type("model.kwargs", kwargs, "a dict of the model builder's arguments")
    name = _str(m["name"], "model.name")
    if name not in models.names():
        raise ConfigValueError(f"config.model.name: unknown model {name!r}; registered: "
                               f"{', '.join(models.names())}")
    dim = _int(m["embedding_dim"], "model.embedding_dim", 1)
    try:
        models.check_arguments(name, kwargs)
    except ConfigError as exc:
        raise ConfigValueError(f"config.model (name={name!r}, embedding_dim={dim}, "
                               f"kwargs={kwargs}): {exc}") from exc
    return ModelPlan(name, dim, types.MappingProxyType(dict(kwargs)))


def _init_from(path) -> str:
    path = _str(path, "init_from")
    if path and not (path.endswith(".keras") and os.path.isfile(path)):
        raise ConfigValueError(f"config.init_from={path!r}: expected a saved kreid model "
                               "(.keras, e.g. a run's embedding.keras); "
                               + ("not a .keras file" if os.path.isfile(path)
                                  else "no such file"))
    return path


def _image_size(size) -> tuple[int, int]:
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        _fail_type("image_size", size, "(height, width)")
    return (_int(size[0], "image_size[0]", 8), _int(size[1], "image_size[1]", 8))


def _augment(a: dict) -> AugmentConfig:
    erasing = _float(a["erasing_prob"], "augment.erasing_prob", 0.0)
    if erasing > 1:
        raise ConfigValueError(f"config.augment.erasing_prob={erasing}: a probability in [0, 1]")
    return AugmentConfig(crop=_bool(a["crop"], "augment.crop"),
                         flip=_bool(a["flip"], "augment.flip"), erasing_prob=erasing,
                         jitter=_float(a["jitter"], "augment.jitter", 0.0),
                         padding=_int(a["padding"], "augment.padding", 0))


def _optimizer(o: dict) -> OptimizerPlan:
    return OptimizerPlan(_str(o["name"], "optimizer.name", OPTIMIZERS),
                         _float(o["weight_decay"] or 0.0, "optimizer.weight_decay", 0.0),
                         _float(o["momentum"], "optimizer.momentum", 0.0),
                         _bool(o["nesterov"], "optimizer.nesterov"))


def _distribution(d: dict) -> DistributionPlan:
    devices = d["devices"]
    if not isinstance(devices, (list, tuple)) or not all(isinstance(x, str) for x in devices):
        _fail_type("distribution.devices", devices, "a list of device names")
    strategy = _str(d["strategy"] or "default", "distribution.strategy", STRATEGIES)
    return DistributionPlan(strategy, tuple(devices), _bool(d["sync_bn"], "distribution.sync_bn"))


def _rptm(r: dict) -> RPTMPlan:
    return RPTMPlan(_str(r["mode"], "rptm.mode", SELECTION_MODES),
                    _float(r["tau"], "rptm.tau", 0.0),
                    _str(r["side"], "rptm.side", SELECTION_SIDES),
                    _str(r["layout"], "rptm.layout", LAYOUTS),
                    _bool(r["with_rotation"], "rptm.with_rotation"),
                    _int(r["workers"], "rptm.workers", 1), _str(r["cache_dir"], "rptm.cache_dir"))


def _qat(q: dict) -> QATPlan:
    from kreid.export.ranges import METHODS

    return QATPlan(_int(q["steps"], "qat.steps", 0), _float(q["base_lr"], "qat.base_lr", 0.0),
                   _int(q["calibration_images"], "qat.calibration_images", 8),
                   _str(q["ranges"], "qat.ranges", METHODS))


def _qat_stage(qat: QATPlan, last: StagePlan) -> StagePlan:
    """The quantization-aware stage after the float ones: the last stage's terms, Adam from
    ``qat.base_lr``, decayed as Eq. (9) over its second half (beta1 kept at 0.9)."""
    half = qat.steps // 2
    schedule = dataclasses.replace(ScheduleConfig(), kind="exponential", base_lr=qat.base_lr,
                                   t0=half, t1=max(qat.steps, half + 1), beta1_switch=False)
    return StagePlan(qat.steps, "step", last.terms, False, False, schedule, "step", qat=True)


def _adapt(a: dict) -> AdaptPlan:
    t = a["target"]
    if not isinstance(t["options"], dict):
        _fail_type("adapt.target.options", t["options"], "a dict of the loader's options")
    target = DatasetPlan(_str(t["name"], "adapt.target.name"),
                         _str(t["root"], "adapt.target.root"),
                         types.MappingProxyType(dict(t["options"])))
    if target.name:
        from kreid.data import datasets

        _str(target.name, "adapt.target.name", tuple(datasets.names()))
    eps = _float(a["eps"], "adapt.eps", 0.0)
    if eps >= 1.0:
        raise ConfigValueError(f"config.adapt.eps={eps}: a Jaccard distance in (0, 1), or 0 "
                               "for MMT's rule (adapt.rho)")
    eps = eps or "auto"
    k1 = _int(a["k1"], "adapt.k1", 1)
    memory = {k: _float(a["memory"][k], f"adapt.memory.{k}", 0.0)
              for k in ("weight", "temperature", "momentum")}
    if not isinstance(a["losses"], dict):
        _fail_type("adapt.losses", a["losses"], "a dict of loss terms")
    parse_losses(dict(a["losses"]), "config.adapt.losses")       # names and options checked
    epochs, steps = _float(a["epochs"], "adapt.epochs", 0.0), _int(a["steps"], "adapt.steps", 0)
    if not (epochs > 0 or steps > 0):
        raise ConfigValueError("config.adapt: epochs or steps must be positive (the length "
                               "of a round)")
    return AdaptPlan(target, _int(a["rounds"], "adapt.rounds", 1), epochs, steps,
                     _float(a["base_lr"], "adapt.base_lr", 0.0),
                     eps, _float(a["rho"], "adapt.rho", 0.0),
                     _int(a["min_samples"], "adapt.min_samples", 2), k1,
                     _int(a["k2"], "adapt.k2", 1), types.MappingProxyType(dict(a["losses"])),
                     types.MappingProxyType(memory),
                     _str(a["labels"], "adapt.labels", ("clusters", "oracle")))


def _final_eval(f: dict) -> FinalEvalPlan:
    return FinalEvalPlan(_bool(f["enabled"], "final_eval.enabled"),
                         _str(f["tta"], "final_eval.tta", TTA_MODES),
                         _str(f["protocol"], "final_eval.protocol", PROTOCOLS),
                         _str(f["metric"], "final_eval.metric", METRICS),
                         _bool(f["rerank"], "final_eval.rerank"))


def _schedule(spec: dict, key: str) -> tuple[ScheduleConfig, str]:
    """A stage's schedule (the config's, overridden by the stage's own keys) and its unit."""
    fields = {f.name for f in dataclasses.fields(ScheduleConfig)}
    unknown = sorted(set(spec) - fields - {"unit"})
    if unknown:
        raise ConfigError(f"config.{key}.{unknown[0]}: unknown key; valid keys: "
                          f"{', '.join(sorted(fields | {'unit'}))}")
    unit = _str(spec["unit"], f"{key}.unit", UNITS)
    kind = _str(spec["kind"], f"{key}.kind", KINDS)
    milestones = spec["milestones"]
    if not isinstance(milestones, (list, tuple)):
        _fail_type(f"{key}.milestones", milestones, "a list of steps (or epochs)")
    when = _float if unit == "epoch" else _int        # epochs may be fractional
    s = ScheduleConfig(
        kind=kind, base_lr=_float(spec["base_lr"], f"{key}.base_lr", 0.0),
        t0=when(spec["t0"], f"{key}.t0", 0), t1=when(spec["t1"], f"{key}.t1", 0),
        warmup_steps=when(spec["warmup_steps"], f"{key}.warmup_steps", 0),
        warmup_from=_float(spec["warmup_from"], f"{key}.warmup_from", 0.0),
        milestones=tuple(when(m, f"{key}.milestones", 0) for m in milestones),
        gamma=_float(spec["gamma"], f"{key}.gamma", 0.0),
        every=when(spec["every"], f"{key}.every", 0),
        beta1_switch=_bool(spec["beta1_switch"], f"{key}.beta1_switch"),
        offset=when(spec["offset"], f"{key}.offset", 0))
    try:                               # t1 > t0, warm-up before t0, a period for "step"
        check(s)
    except ValueError as exc:
        raise ConfigValueError(f"config.{key}: {exc}") from exc
    return s, unit


def _stages(c: dict) -> tuple[StagePlan, ...]:
    unit = _str(c["stage_unit"], "stage_unit", UNITS)
    specs = c["stages"]
    if not isinstance(specs, list):
        _fail_type("stages", specs, "a list of stages (dicts)")
    if not specs:             # one stage: total_steps, or epochs x the epoch's steps
        total = _int(c["total_steps"], "total_steps", 0)
        epochs = _int(c["epochs"], "epochs", 0)
        if total <= 0 and epochs <= 0:
            raise ConfigValueError("config.total_steps: set it (or config.epochs) to a "
                                   "positive number")
        specs = [{"steps": total} if total > 0 else {"steps": epochs}]
        unit = "step" if total > 0 else "epoch"
    out = []
    for i, given in enumerate(specs):
        key = f"stages[{i}]" if c["stages"] else "total_steps"
        if not isinstance(given, dict):
            _fail_type(key, given, "a dict with " + ", ".join(base.stage_defaults()))
        if c["stages"] and "steps" not in given:
            raise ConfigValueError(f"config.{key}.steps: missing; every stage says how long it "
                                   f"is (in config.stage_unit, {unit}s)")
        spec = _merge(base.stage_defaults(), given, key, (f"{key}.losses", f"{key}.schedule"))
        schedule_spec = spec["schedule"]
        if not isinstance(schedule_spec, dict):
            _fail_type(f"{key}.schedule", schedule_spec, "a dict of schedule keys")
        schedule, schedule_unit = _schedule({**c["schedule"], **schedule_spec},
                                            f"{key}.schedule" if schedule_spec else "schedule")
        own = bool(spec["losses"])
        terms = tuple(parse_losses(spec["losses"] if own else c["losses"],
                                   f"config.{key}.losses" if own else "config.losses"))
        if not terms:
            raise ConfigValueError(f"config.{key + '.losses' if own else 'losses'}: every term "
                                   "has weight 0; a stage trains at least one")
        out.append(StagePlan(
            steps=(_float if unit == "epoch" else _int)(
                spec["steps"], f"{key}.steps" if c["stages"] else "total_steps", 0),
            unit=unit, terms=terms,
            freeze_backbone=_bool(spec["freeze_backbone"], f"{key}.freeze_backbone"),
            freeze_model=_bool(spec["freeze_model"], f"{key}.freeze_model"),
            schedule=schedule, schedule_unit=schedule_unit))
    if not any(s.steps for s in out):
        raise ConfigValueError("config.stages: every stage has 0 steps; give one a positive "
                               "number")
    return tuple(out)


def _sampler(stages: tuple[StagePlan, ...]) -> str:
    """The one batch sampler of the run: what the terms of every stage need, or PK."""
    from kreid.training.samplers import SAMPLERS

    kinds = sorted({t.sampler for s in stages for t in s.terms if t.sampler})
    unknown = [k for k in kinds if k not in SAMPLERS]
    if unknown:
        raise ConfigValueError(f"config.losses: a term needs the batch sampler {unknown[0]!r}, "
                               f"which kreid does not have (known: {', '.join(SAMPLERS)})")
    if len(kinds) > 1:
        raise ConfigValueError(f"config.losses: the terms need different batch samplers "
                               f"({', '.join(kinds)}); one run uses one sampler")
    for stage in stages:     # Objective checks it too, with the dataset's attribute count
        reserving = [t.name for t in stage.terms if t.reserved_dims(1)]
        if len(reserving) > 1:
            raise ConfigValueError(f"config.losses: {' and '.join(reserving)} both reserve "
                                   "leading feature dimensions; one term at most can")
    return kinds[0] if kinds else "pk"
