"""AM0BH with attributes on Market-1501 (Sabri et al., Eq. 7, Table 3 "Attr" rows).

L = L_AM + lambda * L_Attr + gamma * L_BH with lambda = 0.25, gamma = 0.33; one
2-way angular-margin head per binary Market attribute (the 26 binary of the
27; age is 4-class and left out) on its own Q = 16 slice of the 2048-d feature.
Target: the paper's Table 3 attribute row on Market-1501 (not reproduced here).
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="market1501", root="data/Market-1501-v15.09.15", options={})
    c.model = dict(name="resnet50_reid", embedding_dim=2048,
                   kwargs=dict(weights="imagenet", last_stride=1, bnneck=False))
    c.image_size = (256, 128)
    c.augment = dict(crop=True, flip=True, erasing_prob=0.5, jitter=0.0, padding=10)
    c.batch.p, c.batch.k = 4, 8
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    attributes=dict(weight=0.25, slice_dim=16, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=0.33, margin=0.3))
    c.schedule = dict(kind="warmup_step", base_lr=1e-3, warmup_steps=20, warmup_from=1e-5,
                      milestones=[90, 130], gamma=0.1, unit="epoch")
    c.epochs = 150
    c.total_steps = 0
    c.final_eval = dict(enabled=True, tta="center_flip", protocol="market")
    return c
