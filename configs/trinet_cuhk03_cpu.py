"""TriNet at CPU scale on ../shared/data/cuhk03_labeled (issue 5: "a TriNet run at CPU scale").

ResNet-50 + FC1024-BN-ReLU + FC128 (Hermans et al. Table 2 architecture) at
128x64 for a short run. ImageNet weights are NOT available on this machine
(no network; the Keras download fails with a clear error), so the ResNet-50
starts from random weights, the opposite of the paper's pretrained TriNet.
Recipe as cuhk03_am0bh_cpu.py. Target: Table 2's TriNet architecture run
end to end at CPU scale; accuracy is reported, not expected to be high.
"""

from kreid.training.config import load_config_file


def get_config():
    c = load_config_file("cuhk03_am0bh_cpu.py", relative_to=__file__)
    c.model = dict(name="trinet", embedding_dim=128, kwargs=dict(weights=None))
    c.image_size = (128, 64)
    c.batch.p = 16
    c.schedule = dict(kind="exponential", base_lr=3e-4, t0=200, t1=300, unit="step")
    c.total_steps = 300
    c.checkpoint_every = 100
    c.log_every = 25
    return c
