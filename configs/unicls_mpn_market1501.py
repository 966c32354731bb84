"""UniCls: MPN-tuplet + triplet + classification on Market-1501, three stages
(Zhang et al., Rethinking Classification Loss Designs: a unified view).

Target: Table 3, "MPN-tuplet + Tri. + Cls." (= Table 4 "UniCls") on
Market-1501: rank-1 96.0, mAP 88.7. Other Table 3 rows (Market-1501 rank-1 /
mAP): Baseline (Tri. + Cls.) 94.7 / 87.3, P2S Tri. + Cls. 94.8 / 86.7,
N-tuplet + Cls. (N=16) 94.7 / 87.7, PN-tuplet + Cls. 94.8 / 87.5, MPN-tuplet +
Cls. 95.3 / 88.7.

As written (Sec. 4.2, 4.4): the ImageNet ResNet-50 with Instance Normalization
in conv2_x-conv4_x ("All our studies are based on this improved ResNet-50",
``ibn=True``), last stride 1, one BN after pooling then the FC classifier
(``bn=False`` in the head: the model's BN-neck is the one BN); 384x128; random
cropping, horizontal flipping, random erasing; Adam; P=16, K=4, N=16; a
learnable temperature for every loss. Stages: "In the first stage, we train
the network with classification loss and PN-tuplet loss for 360 epoches";
stage 2 (epochs 361-480): "we fix the network and only train the meta-learner
with MPN-tuplet loss and the FC layer corresponding to the classification
loss" (``freeze_model``); stage 3 (481-600): joint fine-tuning with the best
row's losses, MPN-tuplet + Tri. + Cls., where "Tri." is the Baseline's
"soft-margin triplet loss (with cosine similarity, without hard mining)" over
"all the triplets within a batch", in the unified two-class form with the
learnable temperature "for each loss" (``unified_triplet``: softplus((S(a, n) -
S(a, p)) / tau), every triplet, cosine; #29, it was a batch-all softplus
without tau).
Not given by the paper (kreid's choices; the learning rates are in its
supplement, not available here): the rates, warm-up and decay (BoT's), weight
decay 5e-4, no label smoothing, the temperature's initial value 0.1, the
2048-d feature (the paper's "x in R^1024" cannot come from a BN alone).
Market-1501 is not on this machine: the config loads, it has not been run here.
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="market1501", root="data/Market-1501-v15.09.15", options={})
    c.model = dict(name="resnet50_reid", embedding_dim=2048,
                   kwargs=dict(weights="imagenet", last_stride=1, bnneck=True, ibn=True))
    c.image_size = (384, 128)
    c.augment = dict(crop=True, flip=True, erasing_prob=0.5, jitter=0.0, padding=0)
    c.batch.p, c.batch.k = 16, 4
    c.optimizer = dict(name="adam", weight_decay=5e-4)
    cls = dict(weight=1.0, label_smoothing=0.0, bn=False)
    tri = dict(weight=1.0)                 # unified_triplet: cosine, every triplet, tau
    c.stages = [
        dict(steps=360, losses=dict(bnneck_ce=cls, prototypical=dict(weight=1.0)),
             schedule=dict(kind="warmup_step", base_lr=3.5e-4, warmup_steps=10,
                           warmup_from=3.5e-6, milestones=[120, 240], gamma=0.1,
                           unit="epoch")),
        dict(steps=120, freeze_model=True,
             losses=dict(mpn=dict(weight=1.0, reduction=8, temperature=0.1), bnneck_ce=cls),
             schedule=dict(kind="constant", base_lr=3.5e-4)),
        dict(steps=120, losses=dict(mpn=dict(weight=1.0), unified_triplet=tri, bnneck_ce=cls),
             schedule=dict(kind="constant", base_lr=3.5e-5)),
    ]
    c.stage_unit = "epoch"                 # stage "steps" above are epochs (360/120/120)
    c.losses = c.stages[0]["losses"]
    c.total_steps = 0
    c.final_eval = dict(enabled=True, tta="none", protocol="market", metric="euclidean",
                        rerank=False)
    return c
