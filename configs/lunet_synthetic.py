"""LuNet on the embedded synthetic dataset: the `make demo` training run (minutes on 2 CPU cores).

Joint normalised softmax (s=16) + soft-margin batch hard at 64x32. Target: far
above the colour-histogram baseline on the synthetic test split; a smoke run,
accuracy claims come from the real data (see cuhk03_labeled_cpu.py). The
config itself ships inside the package (``kreid.demo.demo_config``) so that
``make demo`` works from a non-editable install.
"""

from kreid.demo import demo_config


def get_config():
    return demo_config()
