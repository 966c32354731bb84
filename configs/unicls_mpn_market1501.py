"""Meta prototypical N-tuplet (MPN) on Market-1501, three stages (Zhang et al., unified view).

P=16, K=4, 384x128, N=16. Stage 1: classification on the BN-neck + batch-hard
triplet. Stage 2: backbone frozen, train the mapping subnet phi (FC-BN-FC,
s = 8) and the classifier with the MPN loss (cosine similarity, learnable
temperature). Stage 3: everything with MPN + triplet + classification.
N = 16: the P = 16 identities of a batch give the 16 prototypes of each
N-tuplet. Target: the MPN (ResNet-50) row of the paper's Market-1501 results
Table (not reproduced here: the dataset is not on this machine).
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="market1501", root="data/Market-1501-v15.09.15", options={})
    c.model = dict(name="resnet50_reid", embedding_dim=2048,
                   kwargs=dict(weights="imagenet", last_stride=1, bnneck=True))
    c.image_size = (384, 128)
    c.augment = dict(crop=True, flip=True, erasing_prob=0.5, jitter=0.0, padding=10)
    c.batch.p, c.batch.k = 16, 4
    c.optimizer = dict(name="adam", weight_decay=5e-4)
    c.schedule = dict(kind="warmup_step", base_lr=3.5e-4, warmup_steps=10, warmup_from=3.5e-6,
                      milestones=[40, 70], gamma=0.1, unit="epoch")
    c.stages = [
        dict(steps=24000, losses=dict(bnneck_ce=dict(weight=1.0, label_smoothing=0.1),
                                      batch_hard=dict(weight=1.0, margin=0.3))),
        dict(steps=4000, freeze_backbone=True,
             losses=dict(mpn=dict(weight=1.0, reduction=8, temperature=0.1),
                         bnneck_ce=dict(weight=1.0)),
             schedule=dict(kind="constant", base_lr=3.5e-4)),
        dict(steps=8000, losses=dict(mpn=dict(weight=1.0), batch_hard=dict(weight=1.0, margin=0.3),
                                     bnneck_ce=dict(weight=1.0)),
             schedule=dict(kind="constant", base_lr=3.5e-5)),
    ]
    c.losses = c.stages[0]["losses"]
    c.total_steps = 36000
    c.final_eval = dict(enabled=True, tta="center_flip", protocol="market")
    return c
