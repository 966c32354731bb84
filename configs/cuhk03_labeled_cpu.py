"""CPU-scale run on ../shared/data/cuhk03_labeled (743 train ids; 100 test ids, README protocol).

Target (issue 5): rank-1 >= 52% under the CUHK03 single-gallery-shot metric
(LOMO+XQDA, the classic hand-crafted baseline, has 52.2%) within 60 minutes
of training on a 2-core CPU. Joint normalised softmax (AM0, s=16) + soft-margin
batch hard (Sabri et al. Table 3, AM0BHsp) on the edge backbone, trained from
scratch (no ImageNet weights on this machine). BENCHMARKS.md lists the attempts.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.deterministic = False
    c.dataset = dict(name="cuhk03", root="../shared/data/cuhk03_labeled", options={})
    c.validation = dict(holdout_ids=0, every=0)
    c.model = dict(name="mobilenet_edge", embedding_dim=128, kwargs={})
    c.image_size = (128, 64)
    c.preprocessing = ""
    c.augment = dict(crop=True, flip=True, erasing_prob=0.5, jitter=0.0, padding=0)
    c.batch = dict(p=16, k=4, short="replicate")
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=1.0, margin="soft"))
    c.optimizer = dict(name="adam", weight_decay=0.0)
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=3000, t1=5000, unit="step")
    c.total_steps = 5000
    c.stages = []
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.log_every = 100
    c.histogram_every = 1000
    c.distribution = dict(strategy="default", devices=[], sync_bn=True)
    c.rptm = dict(mode="mean", tau=10.0, workers=2)
    c.final_eval = dict(enabled=True, tta="none", protocol="cuhk03_sgs")
    return c
