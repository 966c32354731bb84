"""RPTM on VeRi-776 (Ghosh et al., Relation Preserving Triplet Mining), ResNet-50.

Target: Table 2, "RPTM (ResNet-50)" on VeRi-776: mAP 79.90, rank-1 96.10
without re-ranking; 86.40 / 96.70 with re-ranking (the paper re-ranks on
VeRi-776 and DukeMTMC, Sec. 6.2; ``final_eval.rerank`` below). The 88.0 /
97.3 of Table 5b is the ResNet-101 model with re-ranking.

As written in the paper: GMS relational matrix over same-identity training
pairs (224x224, 10,000 ORB features, orientation on, Sec. 5.1); positives by
RPTM_mean (Sec. 4.2), batch-hard negatives (Eq. 8); "Our RPTM module
includes instance-batch-normalization and a squeeze-excitation layer"
(IBN + SE, Sec. 5.2); "random flipping, random padding, random erasing and
colour jitter (randomly changing contrast, brightness, hue and saturation)
all activated"; 240x240 input; SGD, lr 0.005, x0.1 every 20 epochs, 80
epochs, batch 24; plain cross-entropy (Eq. 1) + triplet (Eq. 2).
Not given by the paper (kreid's choices): momentum 0.9 and weight decay
5e-4, the hinge margin 1.0 (the authors' code), padding 10 px, erasing
probability 0.5, colour-jitter strength 0.2, P=6 identities x K=2 anchors,
each with its RPTM positive (24 images: the paper's batch; rptm.layout
"anchors", every sampled image an anchor as in the authors' code), last
stride 1 and the BN-neck.
VeRi-776 is not on this machine: the config loads, it has not been run here.
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="veri776", root="data/VeRi", options={})
    c.model = dict(name="resnet50_reid", embedding_dim=2048,
                   kwargs=dict(weights="imagenet", last_stride=1, bnneck=True, ibn=True,
                               se=True))
    c.image_size = (240, 240)
    c.augment = dict(crop=False, flip=True, erasing_prob=0.5, jitter=0.2, padding=10)
    c.batch.p, c.batch.k = 6, 2        # 12 anchors + their 12 positives = 24 (the paper's)
    c.losses = dict(rptm=dict(weight=1.0, margin=1.0),
                    bnneck_ce=dict(weight=1.0, label_smoothing=0.0))
    c.rptm = dict(mode="mean", tau=10.0, side="above", layout="anchors", with_rotation=True,
                  workers=2, cache_dir="")
    c.optimizer = dict(name="sgd", momentum=0.9, weight_decay=5e-4)
    c.schedule = dict(kind="step", base_lr=0.005, every=20, gamma=0.1, unit="epoch")
    c.epochs = 80
    c.total_steps = 0
    c.final_eval = dict(enabled=True, tta="none", protocol="market", metric="euclidean",
                        rerank=True)
    return c
