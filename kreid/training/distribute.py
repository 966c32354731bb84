"""tf.distribute plumbing: one object that hides whether training runs on one device,
several local devices (MirroredStrategy) or several hosts (MultiWorkerMirroredStrategy).

The global PK batch is produced identically by every input pipeline (it is a
pure function of the seed and the step) and each replica takes its own
contiguous slice; embeddings are all-gathered so that batch-hard mining sees
the global batch and results do not depend on the number of replicas.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(kind: str = "default", devices=None) -> tf.distribute.Strategy:
    """``default`` (one device), ``mirrored`` (local GPUs, or ``devices``), ``multi_worker``
    (hosts from the ``TF_CONFIG`` environment variable)."""
    if kind in ("default", "", None):
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("distribution.strategy=multi_worker needs the TF_CONFIG environment "
                             "variable (cluster and task) on every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"distribution.strategy must be one of {STRATEGIES}, got {kind!r}")


class Replicas:
    def __init__(self, strategy: tf.distribute.Strategy | None = None):
        self.strategy = strategy or tf.distribute.get_strategy()
        self.num = int(self.strategy.num_replicas_in_sync)

    @property
    def is_chief(self) -> bool:
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None or not resolver.task_type:
            return True
        return resolver.task_type == "chief" or (resolver.task_type == "worker" and
                                                 resolver.task_id == 0 and
                                                 "chief" not in json.loads(os.environ.get(
                                                     "TF_CONFIG", "{}")).get("cluster", {}))

    def scope(self):
        return self.strategy.scope()

    def gather(self, x: tf.Tensor) -> tf.Tensor:
        if self.num == 1:
            return x
        return tf.distribute.get_replica_context().all_gather(x, axis=0)

    def run(self, fn, *args):
        if self.num == 1:
            return fn(*args)
        return self.strategy.run(fn, args=args)

    def local(self, value):
        if self.num == 1:
            return value
        return self.strategy.experimental_local_results(value)[0]

    def all_local(self, value) -> list:
        """The values of every replica on this host."""
        if self.num == 1:
            return [value]
        return list(self.strategy.experimental_local_results(value))

    def distribute(self, make_dataset, global_batch: int):
        """Iterable of per-replica batches; ``make_dataset()`` yields global batches."""
        if self.num == 1:
            return make_dataset()
        if global_batch % self.num:
            raise ValueError(f"the global batch of {global_batch} images (config.batch.p x "
                             f"config.batch.k, or 3 x the triplets per batch) does not split "
                             f"over {self.num} replicas")
        per = global_batch // self.num
        n = self.num

        def dataset_fn(ctx: tf.distribute.InputContext):
            local = n // ctx.num_input_pipelines
            first = ctx.input_pipeline_id * local

            def split(batch):
                parts = {k: tf.reshape(v, [n, per, *v.shape[1:]])[first:first + local]
                         for k, v in batch.items()}
                return tf.data.Dataset.from_tensor_slices(parts)
            return make_dataset().flat_map(split)

        options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
        return self.strategy.distribute_datasets_from_function(dataset_fn, options)
