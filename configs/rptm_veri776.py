"""RPTM on VeRi-776 (Ghosh et al., Relation Preserving Triplet Mining).

GMS relational matrix over same-identity training pairs; positives by
RPTM_mean (threshold = mean of non-zero match counts), batch-hard negatives
(Eq. 8); SGD lr 0.005, momentum 0.9, x0.1 every 20 epochs, batch 24 (P=6,
K=4 as anchor/positive pairs), 80 epochs, 240x240 input. Target: the RPTM_mean
row of the paper's VeRi-776 results Table (dataset not on this machine).
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="veri776", root="data/VeRi", options={})
    c.model = dict(name="resnet50_reid", embedding_dim=2048,
                   kwargs=dict(weights="imagenet", last_stride=1, bnneck=True))
    c.image_size = (240, 240)
    c.augment = dict(crop=True, flip=True, erasing_prob=0.5, jitter=0.0, padding=10)
    c.batch.p, c.batch.k = 6, 4
    c.losses = dict(rptm=dict(weight=1.0, margin=1.0), bnneck_ce=dict(weight=1.0))
    c.rptm = dict(mode="mean", tau=10.0, workers=2, cache_dir="")
    c.optimizer = dict(name="sgd", momentum=0.9, weight_decay=5e-4)
    c.schedule = dict(kind="step", base_lr=0.005, every=20, gamma=0.1, unit="epoch")
    c.epochs = 80
    c.total_steps = 0
    c.final_eval = dict(enabled=True, tta="none", protocol="market")
    return c
