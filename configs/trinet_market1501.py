"""TriNet on Market-1501 (Hermans et al. 2017, Table 2; the network of Sec. 3.3).

ResNet-50 (ImageNet-pretrained) + FC1024-BN-ReLU + FC128, soft-margin batch
hard, P=18, K=4, 256x128, Adam eps0 = 3e-4, exponential decay from t0 = 15k
to t1 = 25k with beta1 0.9 -> 0.5. Target: mAP 69.14%, rank-1 84.92%
(5-crop + flip TTA, no re-ranking). Needs a GPU and the ImageNet weights:
``--config.model.kwargs.weights=/path/resnet50_notop.weights.h5``.
"""

from kreid.training.config import base_config


def get_config():
    c = base_config()
    c.dataset = dict(name="market1501", root="data/Market-1501-v15.09.15", options={})
    c.model = dict(name="trinet", embedding_dim=128, kwargs=dict(weights="imagenet"))
    c.image_size = (256, 128)
    c.batch.p, c.batch.k = 18, 4
    c.losses = dict(batch_hard=dict(weight=1.0, margin="soft"))
    c.schedule = dict(kind="exponential", base_lr=3e-4, t0=15000, t1=25000, unit="step")
    c.total_steps = 25000
    c.final_eval = dict(enabled=True, tta="five_flip", protocol="market")
    return c
