"""The trainer: config -> data, model, objective, optimizer -> resumable training in a workdir.

Workdir layout::

    config.json          the resolved config
    checkpoints/         ckpt-<step>.npz, atomic, the last ``keep_checkpoints``
    tb/                  TensorBoard scalars and histograms
    log.jsonl            one line per log step (the learning curve)
    embedding.keras      embedding-only model (heads stripped) + embedding.keras.json sidecar
    final.keras          embedding model with its training heads
    report/              test-set metrics and figures when ``final_eval`` is on

A run started in a workdir that holds checkpoints resumes from the newest:
step, stage, model/head weights, optimizer state (hence schedule position)
and - because batch t is a pure function of (seed, t) - the sampler stream.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time

import numpy as np
import tensorflow as tf

from kreid import models
from kreid.data import augment as aug
from kreid.data import datasets, pipeline
from kreid.data.records import Record
from kreid.errors import NonFiniteError
from kreid.training import checkpoint, schedules
from kreid.training.distribute import Replicas
from kreid.training.objective import Objective, attribute_columns
from kreid_edge.files import atomic_write, write_text
from kreid_edge.sidecar import Sidecar, write_sidecar

log = logging.getLogger(__name__)


def holdout(records: list[Record], num_ids: int, seed: int):
    """Split ``num_ids`` training identities off as a validation query/gallery set
    (first image per identity and camera is a query, the rest gallery)."""
    pids = sorted({r.pid for r in records})
    if not 0 < num_ids < len(pids):
        raise ValueError(f"validation.holdout_ids={num_ids} must be in 1..{len(pids) - 1}")
    val = set(np.random.default_rng(seed).choice(pids, num_ids, replace=False).tolist())
    from kreid.data.records import relabel

    train = relabel([r for r in records if r.pid not in val])
    query, gallery, seen = [], [], set()
    for r in sorted((r for r in records if r.pid in val), key=lambda r: r.path):
        key = (r.pid, r.camid)
        (gallery if key in seen else query).append(dataclasses.replace(r, label=-1))
        seen.add(key)
    return train, query, gallery


def _stages(config, steps_per_epoch: int = 1) -> list[dict]:
    if config.get("stages"):
        return [dict(s) for s in config.stages]
    steps = int(config.total_steps)
    if not steps and config.get("epochs"):
        steps = int(config.epochs) * steps_per_epoch
    if steps <= 0:
        raise ValueError("set config.total_steps (or config.epochs) to a positive number")
    return [{"steps": steps}]


def _make_optimizer(config, schedule: schedules.ScheduleConfig):
    import keras

    name = config.optimizer.get("name", "adam")
    lr = schedules.Schedule(**dataclasses.asdict(schedule))
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                                     weight_decay=config.optimizer.get("weight_decay") or None)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr,
                                    momentum=float(config.optimizer.get("momentum", 0.9)),
                                    nesterov=bool(config.optimizer.get("nesterov", False)),
                                    weight_decay=config.optimizer.get("weight_decay") or None)
    raise ValueError(f"config.optimizer.name must be 'adam' or 'sgd', got {name!r}")


def _schedule(config, stage: dict, steps_per_epoch: int) -> schedules.ScheduleConfig:
    spec = {**dict(config.schedule), **dict(stage.get("schedule", {}))}
    unit = spec.pop("unit", "step")
    scale = steps_per_epoch if unit == "epoch" else 1
    for key in ("t0", "t1", "warmup_steps", "every"):
        if key in spec:
            spec[key] = int(spec[key] * scale)
    if "milestones" in spec:
        spec["milestones"] = [int(m * scale) for m in spec["milestones"]]
    return schedules.ScheduleConfig(**spec)


class Trainer:
    """Run ``config`` in ``workdir`` (see ``configs/`` and ``bin/train.py``)."""

    def __init__(self, config, workdir: str, strategy: tf.distribute.Strategy | None = None,
                 resume: bool = True, progress: bool = True):
        self.config, self.workdir, self.progress = config, workdir, progress
        self.replicas = Replicas(strategy)
        self.is_chief = self.replicas.is_chief
        os.makedirs(workdir, exist_ok=True)
        self._prepare_data()
        self._build()
        self.step, self.stage = 0, 0
        if resume:
            self._restore()

    # ----------------------------------------------------------------- setup
    def _prepare_data(self) -> None:
        c = self.config
        ds = datasets.load(c.dataset.name, c.dataset.root, **dict(c.dataset.get("options", {})))
        ds.check_nonempty("train")
        train = ds.train
        self.val = None
        if c.validation.get("holdout_ids", 0):
            train, q, g = holdout(train, int(c.validation.holdout_ids), int(c.seed))
            self.val = (q, g)
        self.dataset, self.train_records = ds, train
        self.num_classes = len({r.label for r in train})
        attrs = pipeline.attribute_matrix(train)
        self.attr_cols = attribute_columns(attrs)
        self.image_size = tuple(c.image_size)
        self.preprocessing = c.get("preprocessing") or models.preprocessing(c.model.name)
        self.batch_size = int(c.batch.p) * int(c.batch.k)
        self.steps_per_epoch = max(1, math.ceil(len(train) / self.batch_size))

    def _build(self) -> None:
        import keras

        c = self.config
        keras.utils.set_random_seed(int(c.seed))   # same initial weights in every run
        with self.replicas.scope():
            self.model = models.build(c.model.name, (*self.image_size, 3),
                                      int(c.model.embedding_dim), **dict(c.model.get("kwargs", {})))
            if self.replicas.num > 1 and c.distribution.get("sync_bn", True):
                for layer in self.model._flatten_layers():
                    if isinstance(layer, tf.keras.layers.BatchNormalization):
                        layer.synchronized = True
            self.objectives, shared = [], {}
            for stage in _stages(c, self.steps_per_epoch):
                obj = Objective(dict(stage.get("losses") or c.losses), self.num_classes,
                                int(c.model.embedding_dim), len(self.attr_cols), shared)
                shared.update(obj.heads)
                self.objectives.append(obj)
            self.heads = shared
            for obj in self.objectives:
                obj.build()
            self.model(tf.zeros((1, *self.image_size, 3)), training=False)

    def _stage_bounds(self) -> list[int]:
        steps = [int(s["steps"]) for s in _stages(self.config, self.steps_per_epoch)]
        return list(np.cumsum([0] + steps))

    @property
    def total_steps(self) -> int:
        return self._stage_bounds()[-1]

    def _head_variables(self) -> list:
        return [v for name in sorted(self.heads) for v in self.heads[name].weights]

    def _trainables(self, stage: dict) -> list:
        models.freeze_backbone(self.model, bool(stage.get("freeze_backbone", False)))
        names = set(self.objectives[self.stage].heads)
        return self.model.trainable_variables + [
            v for n in sorted(names) for v in self.heads[n].trainable_variables]

    # ------------------------------------------------------------ checkpoint
    def _ckpt_dir(self) -> str:
        return os.path.join(self.workdir, "checkpoints")

    def _save(self) -> None:
        groups = {"model": self.model.weights, "heads": self._head_variables(),
                  "optimizer": self.optimizer.variables}
        if self.is_chief:
            checkpoint.save(self._ckpt_dir(), self.step, groups, {"stage": self.stage},
                            keep=int(self.config.get("keep_checkpoints", 3)))

    def _restore(self) -> None:
        found = checkpoint.list_checkpoints(self._ckpt_dir())
        if not found:
            return
        meta, groups = checkpoint.load(found[-1][1])
        checkpoint.assign(self.model.weights, groups.get("model", []), "model")
        checkpoint.assign(self._head_variables(), groups.get("heads", []), "heads")
        self.step, self.stage = int(meta["step"]), int(meta["stage"])
        self._pending_optimizer = groups.get("optimizer", [])
        self._truncate_log()
        log.info("resumed from %s (step %d, stage %d)", found[-1][1], self.step, self.stage)

    def _truncate_log(self) -> None:
        """Drop log.jsonl lines past the resumed step: the run will write them again."""
        path = os.path.join(self.workdir, "log.jsonl")
        if not (self.is_chief and os.path.isfile(path)):
            return
        with open(path) as f:
            lines = f.readlines()
        keep = []
        for line in lines:
            try:
                if int(json.loads(line)["step"]) <= self.step:
                    keep.append(line)
            except (ValueError, KeyError, TypeError):
                pass                      # a line cut by the kill that ended the run
        if len(keep) != len(lines):
            write_text(path, "".join(keep))

    # -------------------------------------------------------------- training
    def _dataset(self, start_step: int, sampler=None):
        c = self.config
        augment = aug.AugmentConfig(**dict(c.augment))
        records = self.train_records
        if len(self.attr_cols):
            records = [dataclasses.replace(r, attributes=tuple(np.asarray(r.attributes)[
                self.attr_cols].tolist()) if r.attributes is not None else None) for r in records]

        def make():
            return pipeline.train_dataset(
                records, int(c.batch.p), int(c.batch.k), self.image_size, seed=int(c.seed),
                start_step=start_step, augment=augment, preprocessing=self.preprocessing,
                skip_corrupt=bool(c.get("skip_corrupt", False)), short=c.batch.get(
                    "short", "replicate"), sampler=sampler, with_attributes=bool(len(
                        self.attr_cols)), as_dict=True,
                camera_balanced=bool(c.batch.get("camera_balanced", False)))
        return self.replicas.distribute(make, self.batch_size)

    def _sampler(self):
        terms = {t.name: t for o in self.objectives for t in o.terms}
        if "triplet" in terms and terms["triplet"].options.get("mining") == "ohm":
            from kreid.mining.triplets import OHMSampler

            self.ohm = OHMSampler(self.batch_size // 3, seed=int(self.config.seed))
            self.batch_size = self.ohm.batch_size
            self._mine()
            return self.ohm
        if "rptm" not in terms:
            return None
        from kreid.mining import rptm

        o = dict(self.config.get("rptm", {}))
        matrix = rptm.build_relational_matrix(
            [r.path for r in self.train_records], [r.label for r in self.train_records],
            o.get("cache_dir") or os.path.join(self.workdir, "rptm_cache"),
            workers=int(o.get("workers", os.cpu_count() or 1)))
        return rptm.RPTMSampler(matrix, int(self.config.batch.p), int(self.config.batch.k),
                                mode=o.get("mode", "mean"), tau=float(o.get("tau", 10.0)),
                                seed=int(self.config.seed))

    def _mine(self) -> None:
        """Offline hard mining: embed a random subset of identities with the current
        model and keep each anchor's hardest positive and negative (Table 1, OHM)."""
        from kreid.evaluation.embed import embed_records
        from kreid.mining.triplets import hard_triplets

        rng = np.random.default_rng([int(self.config.seed), self.step, 7])
        labels = np.array([r.label for r in self.train_records])
        ids = rng.choice(np.unique(labels), min(int(self.config.ohm.identities),
                                                len(np.unique(labels))), replace=False)
        subset = np.flatnonzero(np.isin(labels, ids))
        emb = embed_records(self.embedder(), [self.train_records[i] for i in subset],
                            progress=False).embeddings
        self.ohm.update(subset[hard_triplets(emb, labels[subset])])

    def _make_step(self, objective: Objective, variables: list):
        seed0 = int(self.config.seed)
        model, optimizer, replicas = self.model, self.optimizer, self.replicas

        def replica_fn(batch, step):
            gather = replicas.gather
            with tf.GradientTape() as tape:
                emb = model(batch["images"], training=True)
                loss, values = objective(emb, batch, gather, replicas.num,
                                         tf.stack([tf.constant(seed0, tf.int64), step]))
            grads = tape.gradient(loss, variables)
            # one flag per variable, checked every step (NaN/inf stops the run, see _check_finite)
            grads_finite = tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
            optimizer.apply_gradients(zip(grads, variables))
            g_emb, g_labels = gather(emb), gather(tf.cast(batch["labels"], tf.int32))
            from kreid.losses.triplet_family import triplet_stats
            stats = triplet_stats(g_emb, g_labels)
            out = {f"loss/{k}": v for k, v in values.items()}
            out["loss/total"] = loss * replicas.num
            out["finite/grads"] = grads_finite
            out["finite/embeddings"] = tf.reduce_all(tf.math.is_finite(emb))
            out.update({f"health/{k}": v for k, v in stats.items()})
            out["embeddings"] = g_emb
            return out

        @tf.function
        def train_step(iterator, step):
            return replicas.run(replica_fn, next(iterator), step)
        return train_step

    def run(self) -> dict:
        bounds = self._stage_bounds()
        sampler = self._sampler()
        writer = tf.summary.create_file_writer(os.path.join(self.workdir, "tb")) \
            if self.is_chief else tf.summary.create_noop_writer()
        if self.is_chief:
            write_text(os.path.join(self.workdir, "config.json"),
                       self.config.to_json_best_effort(indent=2))
        summary = {}
        while self.step < self.total_steps:
            self.stage = int(np.searchsorted(bounds, self.step, side="right") - 1)
            stage = _stages(self.config, self.steps_per_epoch)[self.stage]
            schedule = _schedule(self.config, stage, self.steps_per_epoch)
            with self.replicas.scope():
                self.optimizer = _make_optimizer(self.config, schedule)
                variables = self._trainables(stage)
                self.optimizer.build(variables)
            pending = getattr(self, "_pending_optimizer", None)
            if pending:
                checkpoint.assign(self.optimizer.variables, pending, "optimizer")
                self._pending_optimizer = None
            stage_end = bounds[self.stage + 1]
            summary = self._run_stage(schedule, variables, stage_end, sampler, writer)
        self._finish()
        return summary

    def _run_stage(self, schedule, variables, stage_end, sampler, writer) -> dict:
        c = self.config
        beta1 = getattr(self.optimizer, "beta_1", None)
        if beta1 is not None:
            self.optimizer.beta_1 = tf.Variable(schedules.adam_beta1(schedule, 0), trainable=False,
                                                dtype=tf.float32)
        step_fn = self._make_step(self.objectives[self.stage], variables)
        iterator = iter(self._dataset(self.step, sampler))
        stage_begin = stage_end - self._stage_len()
        log_every, ckpt_every = int(c.get("log_every", 50)), int(c.get("checkpoint_every", 500))
        val_every = int(c.validation.get("every", 0))
        t_start, images_seen, last = time.perf_counter(), 0, {}
        while self.step < stage_end:
            local_step = self.step - stage_begin      # = optimizer.iterations
            if beta1 is not None:
                self.optimizer.beta_1.assign(schedules.adam_beta1(schedule, local_step))
            try:
                out = step_fn(iterator, tf.constant(self.step, tf.int64))
            except pipeline.READ_ERRORS as exc:   # name the unreadable training files
                pipeline.raise_unreadable(self.train_records, exc,
                                          "set config.skip_corrupt=True")
                raise
            self.step += 1
            self._check_finite(out, variables)
            images_seen += self.batch_size
            if self.step % log_every == 0 or self.step == stage_end:
                last = self._log(out, schedule, local_step, writer, t_start, images_seen)
            if ckpt_every and self.step % ckpt_every == 0:
                self._save()
            if getattr(self, "ohm", None) is not None and \
                    self.step % int(c.ohm.get("every", 500)) == 0:
                self._mine()
            if val_every and self.val and self.step % val_every == 0:
                last.update(self._validate(writer))
        self._save()
        return last

    def _check_finite(self, out: dict, variables: list) -> None:
        """Stop at the first step whose loss terms or gradients hold NaN or inf, naming the
        step, the terms and the variables (no checkpoint is written after it)."""
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

    def _stage_len(self) -> int:
        return int(_stages(self.config, self.steps_per_epoch)[self.stage]["steps"])

    def _log(self, out, schedule, local_step, writer, t_start, images_seen) -> dict:
        scalars = {k: float(np.mean(self.replicas.local(v))) for k, v in out.items()
                   if k != "embeddings" and not k.startswith("finite/")}
        scalars["lr"] = float(schedules.learning_rate(schedule, local_step))
        scalars["images_per_second"] = images_seen / max(time.perf_counter() - t_start, 1e-9)
        if not all(math.isfinite(v) for v in scalars.values()):
            bad = sorted(k for k, v in scalars.items() if not math.isfinite(v))
            raise NonFiniteError(f"step {self.step}: non-finite training values: {bad}")
        with writer.as_default(step=self.step):
            for k, v in scalars.items():
                tf.summary.scalar(k, v)
            if self.step % int(self.config.get("histogram_every", 500)) == 0:
                emb = np.asarray(self.replicas.local(out["embeddings"]))
                tf.summary.histogram("embeddings/norm", np.linalg.norm(emb, axis=1))
                d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
                tf.summary.histogram("embeddings/distances", d[np.triu_indices(len(d), 1)])
        if self.is_chief:
            with open(os.path.join(self.workdir, "log.jsonl"), "a") as f:
                f.write(json.dumps({"step": self.step, **scalars}) + "\n")
        if self.progress and self.is_chief:
            rate = scalars["images_per_second"] / self.batch_size
            eta = (self.total_steps - self.step) / max(rate, 1e-9)
            sys.stdout.write(
                f"step {self.step}/{self.total_steps} loss {scalars['loss/total']:.4f} "
                f"active {scalars['health/active']:.2f} top1 {scalars['health/top1']:.2f} "
                f"norm {scalars['health/norm']:.2f} lr {scalars['lr']:.2e} "
                f"{scalars['images_per_second']:.0f} img/s ETA {eta / 60:.1f} min\n")
            sys.stdout.flush()
        return scalars

    def embedder(self):
        from kreid.evaluation.embed import KerasEmbedder

        return KerasEmbedder(self.model, self.preprocessing)

    def _validate(self, writer) -> dict:
        from kreid.evaluation.embed import embed_records
        from kreid.evaluation.runner import score

        q, g = self.val
        res, _ = score(embed_records(self.embedder(), q, progress=False),
                       embed_records(self.embedder(), g, progress=False))
        out = {"val/mAP": res["mAP"], "val/rank1": float(res["cmc"][0])}
        with writer.as_default(step=self.step):
            for k, v in out.items():
                tf.summary.scalar(k, v)
        if self.is_chief:
            print(f"validation at step {self.step}: mAP {100 * out['val/mAP']:.2f}% "
                  f"rank-1 {100 * out['val/rank1']:.2f}%")
            with open(os.path.join(self.workdir, "log.jsonl"), "a") as f:
                f.write(json.dumps({"step": self.step, **out}) + "\n")
        return out

    def _finish(self) -> None:
        if not self.is_chief:
            return
        import keras

        from kreid.evaluation.embed import weights_fingerprint

        models.freeze_backbone(self.model, False)
        sidecar = Sidecar(tuple(self.image_size), self.preprocessing, self.config.model.name,
                          "keras", int(self.config.model.embedding_dim),
                          {"dataset": self.config.dataset.name, "step": self.step,
                           "fingerprint": weights_fingerprint(self.model)})
        path = os.path.join(self.workdir, "embedding.keras")
        _atomic_save(self.model, path)
        write_sidecar(path, sidecar)
        images = keras.Input((*self.image_size, 3), name="images")
        emb = self.model(images)
        outputs = {"embeddings": emb}
        for name, head in self.heads.items():
            if name in ("am_softmax", "bnneck_ce"):
                outputs[name] = head(emb)
        _atomic_save(keras.Model(images, outputs, name="final"),
                     os.path.join(self.workdir, "final.keras"))


def _atomic_save(model, path: str) -> None:
    with atomic_write(path, mode=None, suffix=".keras") as tmp:
        model.save(tmp)
