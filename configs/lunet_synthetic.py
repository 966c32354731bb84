"""LuNet on the embedded synthetic dataset: the demo's run before issue #26.

Joint normalised softmax (s=16) + soft-margin batch hard at 64x32, 560 steps
of P=8 x K=4 at Adam 1e-3 (Eq. 9 over the second half). Target: far above the
colour-histogram baseline on the synthetic test split (75% mAP with
center_flip TTA, BENCHMARKS.md); a smoke run, accuracy claims come from the
real data (see cuhk03_lunet_cpu.py). Slow on AVX2-only CPUs: 21 minutes for
the demo on a 2-core one, hence the demo's smaller ResNet.
"""

from kreid.demo import demo_config


def get_config():
    c = demo_config()
    c.model.name, c.model.kwargs = "lunet", {}
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=280, t1=560, unit="step")
    c.total_steps = 560
    return c
