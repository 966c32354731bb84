"""The training loop: run plan -> data, sampler, model, objective, optimizer -> a resumable run.

Read top to bottom: :class:`Trainer` resolves the config into its run plan
(:mod:`~kreid.training.plan`: every default, type and combination checked
before a file is written), sets the run up once (data, the batch sampler and
so the batch size, the model and the heads of every stage), then
:meth:`Trainer.run` trains stage after stage, saves the model and returns a
:class:`TrainResult`. The rooms around it: :mod:`~kreid.training.terms` (loss terms),
:mod:`~kreid.training.samplers` (which batch sampler),
:mod:`~kreid.training.writer` (TensorBoard, log.jsonl, console),
:mod:`~kreid.training.checkpoint` and :mod:`~kreid.training.artifacts`
(the trained model files).

Workdir layout::

    config.json          the merged config (+ precision_resolved: what "auto" became)
    checkpoints/         ckpt-<step>.npz, atomic, the last ``keep_checkpoints``
    tb/                  TensorBoard scalars and histograms
    log.jsonl            one line per log step (the learning curve)
    embedding.keras      embedding-only model (heads stripped) + embedding.keras.json sidecar
    final.keras          embedding model with its training heads
    report/              test-set metrics and figures when ``final_eval`` is on

A run started in a workdir that holds checkpoints resumes from the newest:
step, stage, model/head weights, optimizer state (hence schedule position)
and - because batch t is a pure function of (seed, t) - the sampler stream
(offline hard mining re-mines its current period with the resumed model). A
checkpoint at a stage's end resumes into the next stage with a fresh optimizer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from typing import Any

import numpy as np
import tensorflow as tf

from kreid import models
from kreid.data import datasets, pipeline
from kreid.data.records import Record, attribute_columns, attribute_matrix, holdout, relabel
from kreid.errors import ConfigError, ConfigValueError, NonFiniteError
from kreid.training import checkpoint, precision, schedules
from kreid.training.artifacts import save_trained_model
from kreid.training.distribute import Replicas
from kreid.training.objective import Objective
from kreid.training.plan import resolve
from kreid.training.qat_stage import QATStage
from kreid.training.samplers import make_sampler
from kreid.training.writer import MetricsWriter
from kreid_edge.files import write_text

log = logging.getLogger(__name__)
# Steps per input stream: its index batches are drawn up front (70-500 us a step, more
# with camera-balanced PK batches), so a long stage gets a new stream every so often
# rather than a long wait before its first step.
STREAM_STEPS = 2000


@dataclasses.dataclass
class TrainResult:
    """What a finished run gives its caller (``bin/train.py``, the demo, the reproduction
    driver): the trained model as an Embedder, the data it was trained and is scored
    on, and the files it wrote."""

    workdir: str
    embedding_path: str          # embedding.keras (with its sidecar); "" on a non-chief
    embedder: Any                # the trained float32 model (kreid.evaluation.embed.Embedder)
    dataset: Any                 # the loaded dataset (test query/gallery)
    train_records: list[Record]
    validation: tuple | None     # held-out (query, gallery) records, when configured
    step: int
    precision: str               # what config.precision resolved to here
    scalars: dict                # the last logged training scalars (+ validation)
    qat_path: str = ""           # embedding.qat.keras after a quantization-aware stage
    qat_embedder: Any = None     # its fake-quantized model (kreid.models.qat)


class Trainer:
    """Run ``config`` (a ConfigDict, resolved here, or a :class:`~kreid.training.plan.Plan`)
    in ``workdir`` (see ``configs/`` and ``bin/train.py``)."""

    def __init__(self, config, workdir: str, strategy: tf.distribute.Strategy | None = None,
                 resume: bool = True, progress: bool = True):
        p = self.plan = resolve(config)          # every check before any file is written
        precision.check(p.precision)
        self.precision = precision.resolve(p.precision)
        self.workdir = workdir
        self.replicas = Replicas(strategy)
        self.is_chief = self.replicas.is_chief
        # data: training records (+ a held-out validation split), attributes, input format
        self.dataset = datasets.load(p.dataset.name, p.dataset.root, **dict(p.dataset.options))
        self.dataset.check_nonempty("train")
        self.train_records, self.val = self._training_records()
        self.num_classes = len({r.label for r in self.train_records})
        self.image_size = p.image_size
        self.preprocessing = p.preprocessing or models.preprocessing(
            p.model.name, p.model.kwargs.get("weights"))
        os.makedirs(workdir, exist_ok=True)
        # the sampler, and so the batch size, decided once: everything below depends on it
        self.sampler = make_sampler(p, self.train_records, workdir)
        self.batch_size = int(self.sampler.batch_size)
        self.steps_per_epoch = max(1, math.ceil(len(self.train_records) / self.batch_size))
        self.bounds = [int(b) for b in np.cumsum(
            [0] + [s.num_steps(self.steps_per_epoch) for s in p.stages])]
        self.total_steps = self.bounds[-1]
        # model and the heads of every stage (stages share a head by term name); a term
        # that reserves leading dims (attribute heads) leaves f_id as the test-time
        # embedding (Sabri et al. Eq. 7)
        self.model, self.objectives, self.heads = self._build()
        self.reserved_dim = max(o.reserved_dim for o in self.objectives)
        self.embedding_model = self._embedding_model()
        self.writer = MetricsWriter(workdir, self.is_chief, progress, self.total_steps,
                                    p.histogram_every)
        self.step, self.stage = 0, 0
        self.saved_optimizer: dict = {}     # optimizer values of a resumed checkpoint
        self.saved_qat: dict = {}           # activation ranges of a resumed QAT checkpoint
        self.train_model = self.model       # what a step runs: the model or its QAT twin
        self.qat: QATStage | None = None
        self.checkpoint_path = ""
        self._embedder = None
        self._precision_history: list[dict] = []
        if resume:
            self._restore()

    # ----------------------------------------------------------------- setup
    def _training_records(self) -> tuple[list[Record], tuple | None]:
        v = self.plan.validation
        train, val = list(self.dataset.train), None
        if v.holdout_ids:
            train, q, g = holdout(train, v.holdout_ids, v.split_seed)
            val = (q, g)
        if self.plan.skip_corrupt:         # labels stay contiguous without the dropped
            train = relabel(pipeline.drop_bad_images(train)[0])
        columns = attribute_columns(attribute_matrix(train))
        if len(columns):      # keep the binary attributes only (Sabri et al.: 2-way heads)
            train = [dataclasses.replace(r, attributes=tuple(
                np.asarray(r.attributes)[columns].tolist()) if r.attributes is not None
                else None) for r in train]
        self.num_attributes = len(columns)
        return train, val

    def _build(self):
        import keras

        p = self.plan
        keras.utils.set_random_seed(p.seed)        # same initial weights in every run
        with self.replicas.scope():
            kwargs = dict(p.model.kwargs)
            with precision.policy(self.precision):    # the heads stay float32
                try:         # the builders' own argument errors, named for the config
                    model = models.build(p.model.name, (*self.image_size, 3),
                                         p.model.embedding_dim, **kwargs)
                except (ConfigError, ConfigValueError) as exc:
                    raise ConfigValueError(
                        f"config.model (name={p.model.name!r}, embedding_dim="
                        f"{p.model.embedding_dim}, kwargs={kwargs}): {exc}") from exc
            precision.check_biases(model)
            if p.init_from:                # the start of a fine-tuning (a checkpoint wins)
                models.init_from(p.init_from, model)
            if self.replicas.num > 1 and p.distribution.sync_bn:
                for layer in models.all_layers(model):
                    if isinstance(layer, tf.keras.layers.BatchNormalization):
                        layer.synchronized = True
            objectives, heads = [], {}
            for stage in p.stages:
                objective = Objective(stage.terms, self.num_classes, p.model.embedding_dim,
                                      self.num_attributes, heads)
                heads.update(objective.heads)
                objectives.append(objective)
            for objective in objectives:
                objective.build()
            model(tf.zeros((1, *self.image_size, 3)), training=False)
        return model, objectives, heads

    def _embedding_model(self):
        """The model without the reserved leading dims (f_attr) when a term reserves them."""
        if not self.reserved_dim:
            return self.model
        import keras

        from kreid.models.layers import ChannelSlice

        dim = int(self.model.output.shape[-1])
        f_id = ChannelSlice(self.reserved_dim, dim, name="f_id")(self.model.output)
        return keras.Model(self.model.input, f_id, name=f"{self.model.name}_f_id")

    def _head_variables(self) -> list:
        return [v for name in sorted(self.heads) for v in self.heads[name].weights]

    # ------------------------------------------------------------ checkpoint
    def _ckpt_dir(self) -> str:
        return os.path.join(self.workdir, "checkpoints")

    def _save(self, optimizer) -> None:
        if self.is_chief:
            groups = {"model": self.model.weights, "heads": self._head_variables(),
                      "optimizer": optimizer.variables}
            if self.qat is not None:
                groups["qat"] = self.qat.range_variables
            checkpoint.save(self._ckpt_dir(), self.step, groups, {"stage": self.stage},
                            keep=self.plan.keep_checkpoints)

    def _restore(self) -> None:
        found = checkpoint.list_checkpoints(self._ckpt_dir())
        if not found:
            return
        meta, groups = checkpoint.load(found[-1][1])
        checkpoint.assign(self.model.weights, groups.get("model", {}), f"{found[-1][1]}: model")
        checkpoint.assign(self._head_variables(), groups.get("heads", {}),
                          f"{found[-1][1]}: heads")
        self.step, self.stage = int(meta["step"]), int(meta["stage"])
        # a checkpoint at a stage's end holds that stage's optimizer; the next stage
        # starts a fresh one (other variables, its own schedule)
        at_boundary = self.step in self.bounds[1:-1]
        self.saved_optimizer = {} if at_boundary else groups.get("optimizer", {})
        self.saved_qat = {} if at_boundary else groups.get("qat", {})
        self.checkpoint_path = found[-1][1]
        self.writer.truncate(self.step)
        self._precision_history = self._recorded_precisions()
        log.info("resumed from %s (step %d, stage %d)", found[-1][1], self.step, self.stage)

    def _recorded_precisions(self) -> list[dict]:
        """What ``precision`` resolved to in the earlier parts of a resumed run (config.json's
        ``precision_history``). A part that resolves otherwise (``auto`` on other hardware)
        goes on safely, as variables and checkpoints are float32, but its steps are no
        longer one recipe: say so."""
        try:
            with open(os.path.join(self.workdir, "config.json")) as f:
                record = json.load(f)
        except (OSError, ValueError):
            return []
        history = list(record.get("precision_history") or (
            [{"from_step": 0, "precision": record["precision_resolved"]}]
            if record.get("precision_resolved") else []))
        if history and history[-1].get("precision") != self.precision:
            log.warning("config.precision=%r resolved to %s here, but to %s for the steps from "
                        "%s on (config.json precision_history): the steps from %d on train in %s",
                        self.plan.precision, self.precision,
                        history[-1].get("precision"), history[-1].get("from_step"), self.step,
                        self.precision)
        return history

    # -------------------------------------------------------------- training
    def run(self) -> TrainResult:
        """Train every stage to its end (from the resumed step), then save the model."""
        if self.is_chief:
            record = json.loads(json.dumps(dict(self.plan.config), default=str))
            record["precision_resolved"] = self.precision      # what "auto" became here
            history = list(self._precision_history)      # and in the earlier parts of the run
            if not history or history[-1].get("precision") != self.precision:
                history.append({"from_step": self.step, "precision": self.precision})
            record["precision_history"] = history
            write_text(os.path.join(self.workdir, "config.json"), json.dumps(record, indent=2))
        scalars: dict = {}
        while self.step < self.total_steps:
            self.stage = int(np.searchsorted(self.bounds, self.step, side="right") - 1)
            if self.plan.stages[self.stage].qat and self.qat is None:
                self._enter_qat(self.stage)
            scalars = self._run_stage(self.stage)
        if self.qat is None and self.plan.stages[-1].qat:    # a finished QAT run, again
            self._enter_qat(len(self.plan.stages) - 1)
        if self.qat is None:
            path = self._save_float_model()
            return TrainResult(self.workdir, path, self.embedder(), self.dataset,
                               self.train_records, self.val, self.step, self.precision,
                               scalars)
        path = os.path.join(self.workdir, "embedding.keras")
        qat_path = ""
        if self.is_chief:
            qat_path = self.qat.save(self.workdir, self.plan.model.name,
                                     self.plan.dataset.name, self.image_size,
                                     self.preprocessing, self.step, self.plan.qat.steps)
        from kreid.evaluation.embed import KerasEmbedder

        float_embedder = KerasEmbedder(models.load_model(path), self.preprocessing, path)
        return TrainResult(self.workdir, path, float_embedder, self.dataset,
                           self.train_records, self.val, self.step, self.precision, scalars,
                           qat_path, self.embedder())

    def _save_float_model(self) -> str:
        """The float model (float32 whatever it trained in) as ``embedding.keras`` with its
        sidecar and ``final.keras`` with the terms' exported heads; "" on a non-chief."""
        self.model.trainable = True
        models.freeze_backbone(self.model, False)
        float_model = precision.float32_copy(self.model)
        if float_model is not self.model:     # saved, evaluated and exported in float32
            self.model, self._embedder = float_model, None
            self.train_model = self.model
            self.embedding_model = self._embedding_model()
        if not self.is_chief:
            return ""
        exported = {name: head for o in self.objectives
                    for name, head in o.exported_heads.items()}
        return save_trained_model(self.embedding_model, exported, self.workdir,
                                  self.plan.model.name, self.plan.dataset.name,
                                  self.image_size, self.preprocessing, self.step,
                                  self.precision)

    def _enter_qat(self, index: int) -> None:
        """Before the quantization-aware stage: the float model is saved (at the stage's
        first step; resumed within the stage, it was saved then), and its twin built and
        given its ranges (calibrated, or the checkpoint's)."""
        with self.replicas.scope():
            if self.step == self.bounds[index]:
                self._save_float_model()
            else:                             # resumed inside the stage: float32 for the twin
                self.model = precision.float32_copy(self.model)
                self.embedding_model = self._embedding_model()
            self.qat = QATStage(self.model, self.reserved_dim)
        self.qat.start(self.train_records, self.preprocessing, self.plan, self.saved_qat,
                       self.checkpoint_path)
        self.saved_qat = {}
        self.train_model = self.qat.twin
        self.embedding_model, self._embedder = self.qat.embedding_model(), None

    def _run_stage(self, index: int) -> dict:
        p, stage = self.plan, self.plan.stages[index]
        schedule = stage.schedule_in_steps(self.steps_per_epoch)
        optimizer, variables = self._optimizer(stage, index, schedule)
        step_fn = self._make_step(self.objectives[index], optimizer, variables)
        refresh = int(self.sampler.refresh_every)
        if refresh:        # offline mining for the current period, before any batch is drawn
            self.sampler.refresh(self.step, self._embed_indices)
        begin, end = self.bounds[index], self.bounds[index + 1]
        iterator, stream_stop = self._stream(end, refresh)
        log_every, ckpt_every, val_every = p.log_every, p.checkpoint_every, p.validation.every
        self.writer.start_stage()
        last: dict = {}
        beta1 = getattr(optimizer, "beta_1", None)
        while self.step < end:
            if isinstance(beta1, tf.Variable):             # Eq. (9): beta1 0.9 -> 0.5 at t0
                beta1.assign(schedules.adam_beta1(schedule, self.step - begin))
            out = self._train_step(step_fn, iterator)
            self.step += 1
            self._check_finite(out, variables)
            self.writer.count(self.batch_size)
            if self.step % log_every == 0 or self.step == end:
                last = self._log(out, schedule, self.step - begin)
            if ckpt_every and self.step % ckpt_every == 0:
                self._save(optimizer)
            if refresh and self.step % refresh == 0 and self.step < end:
                self.sampler.refresh(self.step, self._embed_indices)
                iterator, stream_stop = self._stream(end, refresh)    # drop older batches
            elif self.step == stream_stop and self.step < end:
                iterator, stream_stop = self._stream(end, refresh)
            if val_every and self.val and self.step % val_every == 0:
                last.update(self._validate())
        self._save(optimizer)
        return last

    def _optimizer(self, stage, index: int, schedule):
        """The stage's optimizer over its trainable variables (backbone frozen if asked),
        holding the resumed checkpoint's state when there is one."""
        # freeze_model: "we fix the network" (Zhang et al. stage 2): every model weight,
        # batch-norm statistics included; freeze_backbone: only the backbone
        self.model.trainable = True
        models.freeze_backbone(self.model, stage.freeze_backbone)
        if stage.freeze_model:
            self.model.trainable = False
        names = sorted(self.objectives[index].heads)
        variables = self.train_model.trainable_variables + [
            v for n in names for v in self.heads[n].trainable_variables]
        with self.replicas.scope():
            optimizer = schedules.make_optimizer(self.plan.optimizer, schedule)
            optimizer.build(variables)
        if self.saved_optimizer:
            checkpoint.assign(optimizer.variables, self.saved_optimizer,
                              f"{self.checkpoint_path}: optimizer")
            self.saved_optimizer = {}
        schedules.beta1_variable(optimizer, schedule)
        return optimizer, variables

    def _stream(self, end: int, refresh: int):
        """An iterator over the batches from the current step to the first of: the stage's
        ``end``, the next sampler refresh, ``STREAM_STEPS`` steps on; and that stop."""
        stop = self._stream_stop(self.step, end, refresh)
        return iter(self._dataset(self.step, stop)), stop

    @staticmethod
    def _stream_stop(start: int, end: int, refresh: int) -> int:
        stop = min(end, start + STREAM_STEPS)
        return min(stop, (start // refresh + 1) * refresh) if refresh else stop

    def _dataset(self, start_step: int, stop: int):
        """The batches of steps [start_step, stop): a finite stream whose indices are
        drawn up front (:func:`kreid.data.pipeline.train_dataset`'s ``num_steps``)."""
        def make():
            return pipeline.train_dataset(
                self.train_records, image_size=self.image_size, seed=self.plan.seed,
                start_step=start_step, augment=self.plan.augment,
                preprocessing=self.preprocessing, sampler=self.sampler, as_dict=True,
                num_steps=max(1, stop - start_step))
        return self.replicas.distribute(make, self.batch_size)

    def _make_step(self, objective: Objective, optimizer, variables: list):
        seed0 = self.plan.seed
        model, replicas = self.train_model, self.replicas

        def replica_fn(batch, step):
            gather = replicas.gather
            with tf.GradientTape() as tape:
                emb = tf.cast(model(batch["images"], training=True), tf.float32)
                loss, values = objective(emb, batch, gather, replicas.num,
                                         tf.stack([tf.constant(seed0, tf.int64), step]))
            grads = tape.gradient(loss, variables)
            # one flag per variable, checked every step (NaN/inf stops the run, see _check_finite)
            grads_finite = tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
            optimizer.apply_gradients(zip(grads, variables))
            g_emb = gather(emb[:, objective.reserved_dim:])            # f_id
            g_labels = gather(tf.cast(batch["labels"], tf.int32))
            from kreid.losses.triplet_family import triplet_stats
            stats = triplet_stats(g_emb, g_labels)
            out = {f"loss/{k}": v for k, v in values.items()}
            out["loss/total"] = loss * replicas.num
            out["finite/grads"] = grads_finite
            out["finite/embeddings"] = tf.reduce_all(tf.math.is_finite(emb))
            ok = tf.reduce_all(grads_finite) & out["finite/embeddings"] & tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(v)) for v in values.values()])
            ok = tf.cast(ok, tf.float32)
            if replicas.num > 1:        # every worker stops together (no hung all-reduce)
                ok = tf.distribute.get_replica_context().all_reduce("min", ok)
            out["finite/all"] = ok
            out.update({f"health/{k}": v for k, v in stats.items()})
            out["embeddings"] = g_emb
            return out

        @tf.function
        def train_step(iterator, step):
            return replicas.run(replica_fn, next(iterator), step)
        return train_step

    def _train_step(self, step_fn, iterator) -> dict:
        try:
            return step_fn(iterator, tf.constant(self.step, tf.int64))
        except pipeline.READ_ERRORS as exc:            # name the unreadable training files
            pipeline.raise_unreadable(self.train_records, exc, "set config.skip_corrupt=True")
            raise

    def _check_finite(self, out: dict, variables: list) -> None:
        """Stop at the first step whose loss terms or gradients hold NaN or inf, naming the
        step, the terms and the variables (no checkpoint is written after it). One scalar,
        reduced over all replicas and workers, is read per step; the details only then."""
        if float(np.min(self.replicas.all_local(out["finite/all"]))) > 0:
            return
        grads_ok = np.logical_and.reduce([np.asarray(v) for v in self.replicas.all_local(
            out["finite/grads"])])
        terms = {k[len("loss/"):]: np.asarray(self.replicas.all_local(v), np.float64)
                 for k, v in out.items() if k.startswith("loss/")}
        bad_terms = [k for k, v in terms.items() if not np.isfinite(v).all()]
        emb_ok = all(bool(v) for v in self.replicas.all_local(out["finite/embeddings"]))
        if not bad_terms and grads_ok.all() and emb_ok:
            return
        bad_vars = [variables[i].path for i in np.flatnonzero(~grads_ok)]
        raise NonFiniteError(
            f"step {self.step}: non-finite training values: "
            + ("" if emb_ok else "the model's output (embeddings); ")
            + (f"loss terms {', '.join(bad_terms)}" if bad_terms else "all loss terms finite")
            + (f"; gradients of {len(bad_vars)} variable(s), e.g. {', '.join(bad_vars[:3])}"
               if bad_vars else "")
            + ". Training stopped before writing a checkpoint; lower the learning rate "
            "(config.schedule.base_lr) or check the inputs, then resume from the last "
            "checkpoint")

    def _log(self, out: dict, schedule, local_step: int) -> dict:
        scalars = {k: float(np.mean(self.replicas.local(v))) for k, v in out.items()
                   if k != "embeddings" and not k.startswith("finite/")}
        scalars["lr"] = float(schedules.learning_rate(schedule, local_step))
        return self.writer.scalars(self.step, scalars,
                                   np.asarray(self.replicas.local(out["embeddings"])))

    # ------------------------------------------------------------ evaluation
    def embedder(self):
        """The current model as an Embedder (one compiled function for the whole run)."""
        if self._embedder is None:
            from kreid.evaluation.embed import KerasEmbedder

            self._embedder = KerasEmbedder(self.embedding_model, self.preprocessing)
        return self._embedder

    def _embed_indices(self, indices: np.ndarray) -> np.ndarray:
        from kreid.evaluation.embed import embed_records

        return embed_records(self.embedder(), [self.train_records[i] for i in indices],
                             progress=False).embeddings

    def _validate(self) -> dict:
        from kreid.evaluation.embed import embed_records
        from kreid.evaluation.runner import score

        q, g = self.val
        embedder = self.embedder()
        res, _ = score(embed_records(embedder, q, progress=False),
                       embed_records(embedder, g, progress=False),
                       protocol=self.plan.validation.protocol)
        out = {"val/mAP": res["mAP"], "val/rank1": float(res["cmc"][0])}
        self.writer.validation(self.step, out)
        return out


def train(config, workdir: str, resume: bool = True, logical_cpus: int = 0) -> TrainResult:
    """What ``bin/train.py`` does: train (resuming), then score the test split when
    ``config.final_eval.enabled``; returns the run's :class:`TrainResult` (its
    ``scalars`` hold the test metrics under ``test``)."""
    from kreid.errors import KreidError
    from kreid.training.distribute import make_strategy

    plan = resolve(config)                     # a bad config fails before anything runs
    if logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
    if plan.deterministic:
        tf.config.experimental.enable_op_determinism()
    ckpts = os.path.join(workdir, "checkpoints")
    if not resume and os.path.isdir(ckpts) and os.listdir(ckpts):
        raise KreidError(f"--noresume but {ckpts} is not empty; choose another --workdir")
    strategy = make_strategy(plan.distribution.strategy, plan.distribution.devices)
    from kreid.training import devices

    print(devices.describe(int(strategy.num_replicas_in_sync)), flush=True)
    warning = devices.gpu_warning(devices.system_gpus(), devices.tensorflow_gpus())
    if warning:
        log.warning(warning)
        print(f"warning: {warning}", flush=True)
    trainer = Trainer(plan, workdir, strategy=strategy, resume=resume)
    result = trainer.run()
    final = plan.final_eval
    if final.enabled and trainer.is_chief:
        from kreid.evaluation import reports, runner

        res, _, _ = runner.evaluate_embedder(
            result.embedder, result.dataset, tta=final.tta, metric=final.metric,
            rerank=final.rerank, protocol=final.protocol,
            report_dir=os.path.join(workdir, "report"), label=plan.model.name)
        print("test:", reports.summary_line(res))
        result.scalars["test"] = res
        if result.qat_embedder is not None:     # the fake-quantized model, as int8 runs it
            res, _, _ = runner.evaluate_embedder(
                result.qat_embedder, result.dataset, tta=final.tta, metric=final.metric,
                rerank=final.rerank, protocol=final.protocol,
                report_dir=os.path.join(workdir, "report_qat"), label=f"{plan.model.name} qat")
            print("test (quantization-aware, fake-quantized):", reports.summary_line(res))
            result.scalars["test_qat"] = res
    return result
