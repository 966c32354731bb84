"""Atomic, framework-neutral checkpoints: every variable's value in one ``.npz``.

A checkpoint holds the step, the stage, the model and head weights and the
optimizer's variables (its iteration count, moments, ...). It is written to
a temporary file and renamed, so a crash (even SIGKILL) never leaves a
half-written checkpoint; the last ``keep`` are kept.
"""

from __future__ import annotations

import glob
import json
import os
import re

import numpy as np

_NAME = re.compile(r"ckpt-(\d+)\.npz$")


def _path(directory: str, step: int) -> str:
    return os.path.join(directory, f"ckpt-{step:09d}.npz")


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    found = []
    for path in glob.glob(os.path.join(directory, "ckpt-*.npz")):
        m = _NAME.search(path)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def save(directory: str, step: int, groups: dict[str, list], meta: dict, keep: int = 3) -> str:
    """``groups``: name -> list of variables (anything with ``numpy()``)."""
    os.makedirs(directory, exist_ok=True)
    arrays = {"__meta__": np.array(json.dumps({**meta, "step": step}))}
    for name, variables in groups.items():
        for i, v in enumerate(variables):
            arrays[f"{name}/{i:05d}"] = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
    final = _path(directory, step)
    tmp = os.path.join(directory, f".tmp-{step}-{os.getpid()}.npz")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    for _, old in list_checkpoints(directory)[:-keep]:
        os.remove(old)
    return final


def load(path: str) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """(meta, {group: [arrays in variable order]})."""
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["__meta__"]))
            groups: dict[str, list] = {}
            for key in sorted(k for k in data.files if k != "__meta__"):
                name, _ = key.rsplit("/", 1)
                groups.setdefault(name, []).append(data[key])
    except Exception as exc:
        raise ValueError(f"{path}: unreadable checkpoint ({exc})") from exc
    return meta, groups


def assign(variables: list, values: list[np.ndarray], what: str) -> None:
    if len(variables) != len(values):
        raise ValueError(f"checkpoint {what}: {len(values)} saved values for "
                         f"{len(variables)} variables (did the config change?)")
    for var, val in zip(variables, values):
        if tuple(var.shape) != val.shape:
            raise ValueError(f"checkpoint {what}: {var.path if hasattr(var, 'path') else var.name}"
                             f" has shape {tuple(var.shape)}, saved {val.shape}")
        var.assign(val)
