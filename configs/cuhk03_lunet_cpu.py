"""LuNet on ../shared/data/cuhk03_labeled at 64x32, CPU scale (the Table 1 input size).

LuNet's full-resolution 128-channel blocks make it slow on 2 CPU cores
(about 112 training images/s at 64x32 after issue 14's fused batch norm and
1x1 matmuls, 54 before), so this run is short; it provides the trained LuNet
for the export benchmark (issue 6). Same recipe as cuhk03_am0bh_cpu.py:
AM0 (s=16) + soft-margin batch hard, camera-balanced PK batches, colour
jitter and random erasing. Target: Table 1's setting at CPU scale, reported
under the README protocol and the CUHK03 single-gallery-shot metric.
"""

from kreid.training.config import load_config_file


def get_config():
    c = load_config_file("cuhk03_am0bh_cpu.py", relative_to=__file__)
    c.model.name = "lunet"
    c.image_size = (64, 32)
    c.batch.p = 16
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=500, t1=800, unit="step")
    c.total_steps = 800
    c.checkpoint_every = 200
    c.log_every = 50
    return c
