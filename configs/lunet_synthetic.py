"""LuNet on the embedded synthetic dataset: the `make demo` training run (a few minutes on 2 CPU cores).

Target: a clear improvement over the colour-histogram baseline on the
synthetic test split; this is a smoke run, accuracy claims come from real data.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.deterministic = False
    c.dataset = dict(name="synthetic", root="demo_out/synthetic", options={})
    c.validation = dict(holdout_ids=0, every=0)
    c.model = dict(name="lunet", embedding_dim=128, kwargs={})
    c.image_size = (64, 32)
    c.preprocessing = ""
    c.augment = dict(crop=True, flip=True, erasing_prob=0.0, jitter=0.0, padding=0)
    c.batch = dict(p=16, k=4, short="replicate")
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=1.0, margin="soft"))
    c.optimizer = dict(name="adam", weight_decay=0.0)
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=300, t1=600, unit="step")
    c.total_steps = 600
    c.stages = []
    c.checkpoint_every = 100
    c.keep_checkpoints = 3
    c.log_every = 25
    c.histogram_every = 100
    c.distribution = dict(strategy="default", devices=[], sync_bn=True)
    c.rptm = dict(mode="mean", tau=10.0, workers=2)
    c.final_eval = dict(enabled=True, tta="center_flip")
    return c
