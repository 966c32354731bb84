"""LuNet on ../shared/data/cuhk03_labeled at 64x32, CPU scale (the Table 1 input size).

LuNet's full-resolution 128-channel blocks cost about 54 training images/s
at 64x32 on 2 CPU cores, so this run is short; it provides the trained LuNet
for the export benchmark (issue 6). Same recipe as cuhk03_labeled_cpu.py:
AM0 (s=16) + soft-margin batch hard, camera-balanced PK batches, colour
jitter and random erasing. Target: Table 1's setting at CPU scale, reported
under the README protocol and the CUHK03 single-gallery-shot metric.
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="cuhk03", root="../shared/data/cuhk03_labeled", options={})
    c.model.name = "lunet"
    c.image_size = (64, 32)
    c.augment.erasing_prob = 0.5
    c.augment.jitter = 0.3
    c.batch.p, c.batch.k, c.batch.camera_balanced = 16, 4, True
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=1.0, margin="soft"))
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=500, t1=800, unit="step")
    c.total_steps = 800
    c.checkpoint_every = 200
    c.keep_checkpoints = 2
    c.log_every = 50
    c.final_eval = dict(enabled=True, tta="none", protocol="cuhk03_sgs")
    return c
