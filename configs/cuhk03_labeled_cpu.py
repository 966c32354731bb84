"""CPU-scale run on ../shared/data/cuhk03_labeled (743 train ids; 100 test ids, README protocol).

Target (issue 5): rank-1 >= 52% under the CUHK03 single-gallery-shot metric
(LOMO+XQDA, the classic hand-crafted baseline, has 52.2%) within 60 minutes
of training on a 2-core CPU. Joint normalised softmax (AM0, s=16) + soft-margin
batch hard (Sabri et al. Table 3, AM0BHsp) on the edge backbone, trained from
scratch (no ImageNet weights on this machine), with camera-balanced PK batches,
colour jitter and random erasing; about 19 minutes. This is run D of
BENCHMARKS.md (SGS rank-1 13.7%): the target is not reached yet.
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="cuhk03", root="../shared/data/cuhk03_labeled", options={})
    c.model.name = "mobilenet_edge"
    c.image_size = (128, 64)
    c.augment.erasing_prob = 0.5
    c.augment.jitter = 0.3
    c.batch.camera_balanced = True
    c.batch.p, c.batch.k = 32, 4
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=1.0, margin="soft"))
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=1800, t1=3000, unit="step")
    c.total_steps = 3000
    c.checkpoint_every = 500
    c.keep_checkpoints = 2
    c.log_every = 100
    c.final_eval = dict(enabled=True, tta="none", protocol="cuhk03_sgs")
    return c
