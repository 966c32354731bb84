"""TriNet at CPU scale on ../shared/data/cuhk03_labeled (issue 5: "a TriNet run at CPU scale").

ResNet-50 + FC1024-BN-ReLU + FC128 (Hermans et al. Table 2 architecture) at
128x64 for a short run. ImageNet weights are NOT available on this machine
(no network; the Keras download fails with a clear error), so the ResNet-50
starts from random weights, the opposite of the paper's pretrained TriNet.
Recipe as cuhk03_labeled_cpu.py. Target: Table 2's TriNet architecture run
end to end at CPU scale; accuracy is reported, not expected to be high.
"""

import importlib.util
import os


def _recipe():
    """cuhk03_labeled_cpu.py's config (data, augmentation, camera-balanced PK, losses)."""
    spec = importlib.util.spec_from_file_location(
        "cuhk03_labeled_cpu", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "cuhk03_labeled_cpu.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config():
    c = _recipe()
    c.model = dict(name="trinet", embedding_dim=128, kwargs=dict(weights=None))
    c.image_size = (128, 64)
    c.batch.p = 16
    c.schedule = dict(kind="exponential", base_lr=3e-4, t0=200, t1=300, unit="step")
    c.total_steps = 300
    c.checkpoint_every = 100
    c.log_every = 25
    return c
