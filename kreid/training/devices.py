"""Which devices a run trains on, said at its start, and a GPU TensorFlow cannot see.

``pip install -e ".[cpu]"`` (``make``'s default) installs TensorFlow's CPU
build; ``pip install -e ".[gpu]"`` (``make install TF=gpu``) the build with
CUDA (``tensorflow[and-cuda]``, Linux x86-64). A user with an NVIDIA GPU and
the CPU build would train on the CPU without a word: :func:`gpu_warning`
names that case (a GPU the operating system shows, none TensorFlow sees) and
how to install the GPU build.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

INSTALL_GPU = ('install the GPU build: make install TF=gpu (pip install -e ".[gpu]" in a '
               "fresh virtualenv)")


def system_gpus(proc: str = "/proc/driver/nvidia/gpus") -> list[str]:
    """NVIDIA GPUs the operating system shows (its driver's /proc entries, else
    ``nvidia-smi -L``), whether or not TensorFlow sees them."""
    names = []
    for info in sorted(glob.glob(os.path.join(proc, "*", "information"))):
        try:
            with open(info) as f:
                model = next((line.split(":", 1)[1].strip() for line in f
                              if line.lower().startswith("model")), "NVIDIA GPU")
        except OSError:
            model = "NVIDIA GPU"
        names.append(model)
    if names or not shutil.which("nvidia-smi"):
        return names
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[1].split("(")[0].strip() for line in out.stdout.splitlines()
            if line.startswith("GPU ") and ":" in line]


def tensorflow_gpus() -> list[str]:
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name")
        except (ValueError, RuntimeError):
            name = None
        out.append(name or gpu.name)
    return out


def gpu_warning(system: list[str], visible: list[str]) -> str | None:
    """The warning for GPUs the system shows but TensorFlow does not, or None."""
    if not system or visible:
        return None
    import importlib.metadata as md

    build = ("the CPU build (tensorflow-cpu) is installed" if _installed("tensorflow-cpu", md)
             else "TensorFlow finds no CUDA (drivers or libraries)")
    return (f"{len(system)} GPU(s) on this machine ({', '.join(system)}) but TensorFlow sees "
            f"none: {build}, so this run trains on the CPU; {INSTALL_GPU}")


def _installed(dist: str, md) -> bool:
    try:
        md.version(dist)
        return True
    except md.PackageNotFoundError:
        return False


def describe(replicas: int = 1) -> str:
    """``training on: GPU 0 (NVIDIA A10G)`` or ``training on: CPU, AMD EPYC (x86_64, 2
    cores): AVX2, ...``; with the replica count when distributed."""
    from kreid_edge import cpu

    gpus = tensorflow_gpus()
    where = (", ".join(f"GPU {i} ({name})" for i, name in enumerate(gpus)) if gpus
             else f"CPU, {cpu.describe()}")
    return f"training on: {where}" + (f"; {replicas} replicas" if replicas > 1 else "")
