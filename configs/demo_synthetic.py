"""The `make demo` training run on the embedded synthetic dataset (minutes on 2 CPU cores).

A narrow basic-block ResNet (``resnet_edge``, widths 24-48-96-192) at 64x32,
joint normalised softmax (s=16) + soft-margin batch hard. Target: synthetic
test mAP above 60% with an int8 file within 0.5 points (a smoke run; accuracy
claims come from the real data, see cuhk03_labeled_cpu.py). The config itself
ships inside the package (``kreid.demo.demo_config``) so that ``make demo``
works from a non-editable install.
"""

from kreid.demo import demo_config


def get_config():
    return demo_config()
