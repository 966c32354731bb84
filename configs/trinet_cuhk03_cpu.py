"""TriNet at CPU scale on ../shared/data/cuhk03_labeled (issue 5: "a TriNet run at CPU scale").

ResNet-50 + FC1024-BN-ReLU + FC128 (Hermans et al. Table 2 architecture) at
128x64 for a short run. ImageNet weights are NOT available on this machine
(no network; the Keras download fails with a clear error), so the ResNet-50
starts from random weights, the opposite of the paper's pretrained TriNet.
Recipe as cuhk03_labeled_cpu.py. Target: Table 2's TriNet architecture run
end to end at CPU scale; accuracy is reported, not expected to be high.
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="cuhk03", root="../shared/data/cuhk03_labeled", options={})
    c.model = dict(name="trinet", embedding_dim=128, kwargs=dict(weights=None))
    c.image_size = (128, 64)
    c.augment.erasing_prob = 0.5
    c.augment.jitter = 0.3
    c.batch.p, c.batch.k, c.batch.camera_balanced = 16, 4, True
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=1.0, margin="soft"))
    c.schedule = dict(kind="exponential", base_lr=3e-4, t0=200, t1=300, unit="step")
    c.total_steps = 300
    c.checkpoint_every = 100
    c.keep_checkpoints = 2
    c.log_every = 25
    c.final_eval = dict(enabled=True, tta="none", protocol="cuhk03_sgs")
    return c
