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

from kreid.errors import NonFiniteError
from kreid_edge.files import atomic_write

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
    bad = _non_finite(arrays)
    if bad:
        raise NonFiniteError(f"step {step}: not writing checkpoint {_path(directory, step)}: "
                             f"{len(bad)} array(s) hold NaN or inf, e.g. {', '.join(bad[:3])}")
    final = _path(directory, step)
    with atomic_write(final) as f:
        np.savez(f, **arrays)
    for _, old in list_checkpoints(directory)[:-keep]:
        os.remove(old)
    return final


def _non_finite(arrays: dict) -> list[str]:
    return [k for k, a in arrays.items()
            if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all()]


def load(path: str) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """(meta, {group: [arrays in variable order]}); refuses a checkpoint holding NaN/inf."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
    except Exception as exc:
        raise ValueError(f"{path}: unreadable checkpoint ({exc})") from exc
    bad = _non_finite(arrays)
    if bad:
        raise NonFiniteError(f"{path}: refusing to resume from a checkpoint whose {len(bad)} "
                             f"array(s) hold NaN or inf (e.g. {', '.join(bad[:3])}); move it "
                             "out of the checkpoints folder to resume from an earlier one")
    groups: dict[str, list] = {}
    for key in sorted(arrays):
        name, _ = key.rsplit("/", 1)
        groups.setdefault(name, []).append(arrays[key])
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
