"""AM0BH on Market-1501 (Sabri, Randhawa, Doretto; Table 3, the L_AMBH rows).

Normalised softmax (additive angular margin m = 0, "AM0") joined with batch
hard (gamma = 0.43, Eq. 6) on the un-normalised embedding; P=4, K=8; 150
epochs with linear warm-up 1e-5 -> 1e-3 over 20 epochs and x0.1 at epochs 90
and 130. Variants of Table 3: ``--config.losses.batch_hard.features=normalized
--config.losses.batch_hard.margin=1.0`` (AM0BH1), ``margin=soft`` (AM0BHsp).
Target: the paper's Table 3 AM0BH score on Market-1501 (ResNet-50 ImageNet
backbone; the dataset is not on this machine, so not reproduced here).
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
                    batch_hard=dict(weight=0.43, margin=0.3, features="raw"))
    c.schedule = dict(kind="warmup_step", base_lr=1e-3, warmup_steps=20, warmup_from=1e-5,
                      milestones=[90, 130], gamma=0.1, unit="epoch")
    c.epochs = 150
    c.total_steps = 0                  # from epochs (see kreid.training.trainer)
    c.final_eval = dict(enabled=True, tta="center_flip", protocol="market")
    return c
