"""LuNet on the embedded synthetic dataset: the `make demo` training run (minutes on 2 CPU cores).

Joint normalised softmax (s=16) + soft-margin batch hard at 64x32. Target: far
above the colour-histogram baseline on the synthetic test split; a smoke run,
accuracy claims come from the real data (see cuhk03_labeled_cpu.py).
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset.root = "demo_out/synthetic"
    c.model.name = "lunet"
    c.image_size = (64, 32)
    c.batch.p, c.batch.k = 8, 4
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=1.0, margin="soft"))
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=200, t1=400, unit="step")
    c.total_steps = 400
    c.checkpoint_every = 100
    c.log_every = 25
    c.histogram_every = 100
    c.final_eval = dict(enabled=True, tta="center_flip", protocol="market")
    return c
