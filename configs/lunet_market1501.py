"""LuNet on Market-1501, trained from scratch (Hermans et al. 2017, Table 2).

Soft-margin batch hard, P=32, K=4, 128x64, Adam eps0 = 1e-3, exponential
decay 15k -> 25k with the beta1 switch. Target: mAP 60.71%, rank-1 81.38%
(TTA, no re-ranking).
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset.name, c.dataset.root = "market1501", "data/Market-1501-v15.09.15"
    c.model.name = "lunet"
    c.image_size = (128, 64)
    c.batch.p, c.batch.k = 32, 4
    c.losses = dict(batch_hard=dict(weight=1.0, margin="soft"))
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=15000, t1=25000, unit="step")
    c.total_steps = 25000
    c.final_eval.tta = "five_flip"
    return c
