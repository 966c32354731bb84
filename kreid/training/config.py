"""The base experiment config: every key the trainer reads, with its default.

This is the one place of every default. Experiment files in ``configs/``
start from :func:`base_config` and change what their paper table needs; any
key can be overridden on the command line (``--config.batch.p=18``).
:func:`kreid.training.plan.resolve` reads a config over this one into the
typed run plan that the rest of kreid reads.
"""

import dataclasses

import ml_collections

from kreid.training.schedules import ScheduleConfig
from kreid.errors import ConfigError  # noqa: F401  (raised here; defined with the others)


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.deterministic = False            # tf.config.experimental.enable_op_determinism
    c.precision = "float32"            # | mixed_bfloat16 | auto (kreid.training.precision)
    c.dataset = dict(name="synthetic", root="demo_out/synthetic", options={})
    c.skip_corrupt = False             # drop and count unreadable images instead of failing
    # held-out training ids scored every N steps (protocol market | tracklet | multi_query);
    # split_seed: which ids are held out (-1: config.seed; fix it to compare seeds on one split)
    c.validation = dict(holdout_ids=0, every=0, protocol="market", split_seed=-1)
    c.model = dict(name="lunet", embedding_dim=128, kwargs={})
    # a saved kreid model (a run's embedding.keras, same model config) whose weights start
    # this run: fine-tuning, domain adaptation; a checkpoint to resume from wins over it
    c.init_from = ""
    c.image_size = (128, 64)           # (H, W)
    c.preprocessing = ""               # "" = the model's own (kreid.models.PREPROCESSING)
    c.augment = dict(crop=True, flip=True, erasing_prob=0.0, jitter=0.0, padding=0)
    c.batch = dict(p=32, k=4, short="replicate", camera_balanced=False)
    # name -> {weight, options}; see kreid.training.objective for the registered terms
    c.losses = dict(batch_hard=dict(weight=1.0, margin="soft"))
    c.optimizer = dict(name="adam", weight_decay=0.0, momentum=0.9, nesterov=False)
    # kind: constant | exponential | warmup_step | step; unit: step | epoch
    # warmup_steps: linear warm-up from warmup_from (exponential and warmup_step kinds)
    # Eq. (9) of Hermans et al.; the other kinds' keys (milestones, gamma, every,
    # beta1_switch) keep kreid.training.schedules.ScheduleConfig's defaults, their one home;
    # a stage's own schedule overrides any key
    c.schedule = dict(dataclasses.asdict(ScheduleConfig()), kind="exponential", base_lr=1e-3,
                      t0=15000, t1=25000, unit="step", warmup_steps=0, warmup_from=1e-5)
    c.total_steps = 25000
    c.epochs = 0                       # with total_steps 0: the run's length in epochs
    # multi-stage runs: a list of dicts with the keys of stage_defaults() below
    c.stages = []
    c.stage_unit = "step"              # unit of the stages' "steps": step | epoch
    # quantization-aware training (kreid.models.qat): steps > 0 appends a stage that
    # fine-tunes the trained model with int8 fake quantization (the last stage's loss terms,
    # Adam from base_lr, decayed as Eq. 9 over its second half), its activation ranges
    # first set by the export's calibration (ranges, on calibration_images training
    # images); the run then also writes embedding.qat.keras
    c.qat = dict(steps=0, base_lr=1e-4, calibration_images=200, ranges="image_mse")
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.log_every = 100
    c.histogram_every = 1000
    c.distribution = dict(strategy="default", devices=[], sync_bn=True)
    # RPTM (Ghosh et al.): mode mean|min|max, tau for min, side above|nearest, layout
    # anchors (P x K anchors + their positives) | pairs (P x K: K/2 anchors + positives),
    # see kreid.mining.rptm; GMS orientation on as the paper states
    c.rptm = dict(mode="mean", tau=10.0, side="above", layout="anchors", with_rotation=True,
                  workers=2, cache_dir="")
    c.ohm = dict(every=500, identities=100)   # offline hard mining for losses.triplet.mining=ohm
    # test-set evaluation after training: metric euclidean | cosine (Sabri et al. use cosine
    # on L2-normalised features), k-reciprocal re-ranking (Ghosh et al. on VeRi/Duke)
    c.final_eval = dict(enabled=True, tta="none", protocol="market", metric="euclidean",
                        rerank=False)
    # domain adaptation (bin/adapt.py, kreid.adaptation): from config.init_from (the source
    # model) to target's crops, its train split read without its labels (its query and
    # gallery, if any, score every round); rounds of embed -> k-reciprocal Jaccard ->
    # DBSCAN (eps a Jaccard distance, or 0: MMT's rule from rho) -> training on the clusters
    # with losses + the cluster memory (Cluster Contrast), Adam at a constant base_lr.
    # labels "oracle": the target's true labels instead of clusters (the supervised bound)
    # k1, k2: the k-reciprocal neighbourhoods (SpCL's 30, 6 suit ~17 crops per person;
    # kreid's 5, 2 were chosen on VIPeR for a few crops or tracks per person, #28)
    # a round trains epochs passes over its clustered crops (Cluster Contrast: about 4 per
    # re-clustering on Market), or steps when steps > 0
    c.adapt = dict(target=dict(name="", root="", options={}), rounds=5, epochs=4.0, steps=0,
                   base_lr=3.5e-5, eps=0.0, rho=1.6e-3, min_samples=2, k1=5, k2=2,
                   losses=dict(batch_hard=dict(weight=1.0, margin="soft")),
                   memory=dict(weight=1.0, temperature=0.05, momentum=0.2),
                   labels="clusters")
    return c


def stage_defaults() -> dict:
    """The keys of one entry of ``config.stages`` and their defaults: ``steps`` (in
    ``config.stage_unit``), ``losses`` (empty: ``config.losses``), ``freeze_backbone``,
    ``freeze_model`` (Zhang et al.'s stage 2: every model weight, batch-norm statistics
    included) and ``schedule`` (keys overriding ``config.schedule``)."""
    return dict(steps=0, losses={}, freeze_backbone=False, freeze_model=False, schedule={})


def load_config_file(path: str, *args,
                     relative_to: str | None = None) -> ml_collections.ConfigDict:
    """``get_config(*args)`` of the config file at ``path`` (configs build on each other).

    ``relative_to``: a file whose folder ``path`` is relative to (a config
    passes its own ``__file__`` to build on a sibling config).
    """
    import importlib.util
    import os

    if relative_to is not None:
        path = os.path.join(os.path.dirname(os.path.abspath(relative_to)), path)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


def unknown_override(config: ml_collections.ConfigDict, argv, flag: str = "config") -> str | None:
    """The first ``--config.a.b=v`` in ``argv`` whose key ``config`` lacks, described with
    the valid keys at that level; None if every override names an existing key."""
    prefix = f"--{flag}."
    for arg in argv:
        if not arg.startswith(prefix):
            continue
        path = arg[len(prefix):].split("=", 1)[0].split(".")
        node, where = config, flag
        for key in path:
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if key not in keys:
                valid = ", ".join(sorted(keys)) if keys else f"none ({where} is not a group)"
                return (f"--{flag}.{'.'.join(path)}: unknown key {key!r} in {where}; "
                        f"valid keys: {valid}")
            node, where = node[key], f"{where}.{key}"
    return None

