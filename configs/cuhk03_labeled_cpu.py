"""CPU-scale run on ../shared/data/cuhk03_labeled (743 train ids; 100 test ids, README protocol).

Target (issue 5): rank-1 >= 52% under the CUHK03 single-gallery-shot metric
(LOMO+XQDA, the classic hand-crafted baseline, has 52.2%) within 60 minutes
of training on a 2-core CPU, from scratch (no ImageNet weights on this
machine). Recipe (run I of BENCHMARKS.md): the int8-friendly basic-block
``resnet_edge`` (3.0 M parameters, 128x64, last stride 1); the joint
classification + soft-margin batch hard of Sabri et al. (Table 3, AM0BHsp)
with a BN-neck cross-entropy classifier (label smoothing 0.1, Luo et al.'s
"bag of tricks") in place of the normalised softmax, batch hard on the raw
embedding; camera-balanced PK batches (P=32, K=4) and random erasing; Adam
1e-3 with Eq. (9)'s decay over the last 40% of 4,200 steps (56 minutes at
159 images/s). Result: SGS rank-1 51.5% without TTA, 56.4% with 5-crop +
flip TTA (mAP 47.0% / 52.7%). Shorter attempts and what each changed are in
BENCHMARKS.md.
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="cuhk03", root="../shared/data/cuhk03_labeled", options={})
    c.model.name = "resnet_edge"
    c.image_size = (128, 64)
    c.augment.erasing_prob = 0.5
    c.batch.camera_balanced = True
    c.batch.p, c.batch.k = 32, 4
    c.losses = dict(bnneck_ce=dict(weight=1.0, label_smoothing=0.1),
                    batch_hard=dict(weight=1.0, margin="soft"))
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=2500, t1=4200, unit="step")
    c.total_steps = 4200
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.log_every = 100
    c.final_eval = dict(enabled=True, tta="none", protocol="cuhk03_sgs")
    return c
