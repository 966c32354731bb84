"""AM0BH on Market-1501 (Sabri, Randhawa, Doretto; Eq. 6, Table 3).

Target: Table 3, AM0BH on Market-1501: rank-1 94.64 +- 0.21, mAP 85.90 +- 0.28
(mean of 10 runs). Other Table 3 rows on Market-1501 (rank-1 / mAP): AM0
92.86 / 83.67, AM (m = 0.5) 94.16 / 84.54, BH 84.74 / 67.40, AM0BH1 94.28 /
84.52, AMBH 93.29 / 84.00, AM0BHsp 94.42 / 85.76. Variants:
``--config.losses.batch_hard.features=normalized`` (AM0BH1: "batch hard
triplet loss with feature normalization"), ``--config.losses.batch_hard.margin=soft``
(AM0BHsp: "softplus function instead of hinge loss"),
``--config.losses.am_softmax.margin=0.5`` (AM / AMBH).

As written in the paper: ImageNet ResNet-50 with the last stride 1, GAP and a
BN (Sec. 3.4; ``bnneck_center=True``: a plain BN), the 2048-d embedding;
normalised softmax (AM0, m = 0) + gamma = 0.43 batch hard on the raw
(un-normalised) embedding, Euclidean (Eq. 6); "training images are randomly
flipped and erased"; P=4, K=8; Adam; 150 epochs, linear warm-up 1e-5 -> 1e-3
over 20 epochs, x0.1 at 90 and 130; at test time "the l2 normalized embedding
... re-identification is done via cosine similarity" (``final_eval.metric``).
Not given by the paper (kreid's choices): the scale s = 16, the batch-hard
hinge margin 0.3, the erasing probability 0.5. Market-1501 is not on this
machine: the config loads, it has not been run here.
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="market1501", root="data/Market-1501-v15.09.15", options={})
    c.model = dict(name="resnet50_reid", embedding_dim=2048,
                   kwargs=dict(weights="imagenet", last_stride=1, bnneck=True,
                               bnneck_center=True))
    c.image_size = (256, 128)
    c.augment = dict(crop=False, flip=True, erasing_prob=0.5, jitter=0.0, padding=0)
    c.batch.p, c.batch.k = 4, 8
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=0.43, margin=0.3, features="raw"))
    c.schedule = dict(kind="warmup_step", base_lr=1e-3, warmup_steps=20, warmup_from=1e-5,
                      milestones=[90, 130], gamma=0.1, unit="epoch")
    c.epochs = 150
    c.total_steps = 0                  # from epochs (see kreid.training.trainer)
    c.final_eval = dict(enabled=True, tta="none", protocol="market", metric="cosine",
                        rerank=False)
    return c
