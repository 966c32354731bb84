"""Atomic, framework-neutral checkpoints: every variable's value in one ``.npz``.

A checkpoint holds the step, the stage, the model and head weights and the
optimizer's variables (its iteration count, moments, ...), each keyed by
``<group>/<variable path>`` (``model/conv1/kernel``), so a change in layer
order can never load a tensor into the wrong variable: a variable without a
saved value, or a saved value without a variable, is an error naming them.
Checkpoints written before path keys (``model/00012``) still load, by
position, with their shapes checked. It is written to
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


_POSITIONAL = re.compile(r"^\d{5}$")


def variable_keys(variables: list) -> list[str]:
    """One unique key per variable: its path (``.path``, else ``.name``, else its index)."""
    keys, seen = [], set()
    for i, v in enumerate(variables):
        key = str(getattr(v, "path", None) or getattr(v, "name", None) or f"{i:05d}")
        if key in seen:                      # never expected from Keras; keep keys unique
            key = f"{key}#{i}"
        seen.add(key)
        keys.append(key)
    return keys


def save(directory: str, step: int, groups: dict[str, list], meta: dict, keep: int = 3) -> str:
    """``groups``: name -> list of variables (anything with ``numpy()``)."""
    os.makedirs(directory, exist_ok=True)
    arrays = {"__meta__": np.array(json.dumps({**meta, "step": step, "keys": "path"}))}
    for name, variables in groups.items():
        for key, v in zip(variable_keys(variables), variables):
            arrays[f"{name}/{key}"] = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
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


def load(path: str) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(meta, {group: {key: array}}); refuses a checkpoint holding NaN/inf. Keys are
    variable paths, or 5-digit positions in checkpoints written before path keys."""
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
    groups: dict[str, dict] = {}
    for key in sorted(arrays):
        name, rest = key.split("/", 1)
        groups.setdefault(name, {})[rest] = arrays[key]
    return meta, groups


def assign(variables: list, saved: dict[str, np.ndarray], what: str) -> None:
    """Assign saved values to ``variables`` by path (or by position for an old checkpoint),
    checking that every variable has exactly one value of its shape."""
    saved = dict(saved)
    if saved and all(_POSITIONAL.match(k) for k in saved):          # before path keys
        keys = [f"{i:05d}" for i in range(len(variables))]
    else:
        keys = variable_keys(variables)
    missing = [k for k in keys if k not in saved]
    extra = sorted(set(saved) - set(keys))
    if missing or extra:
        raise ValueError(
            f"checkpoint {what}: {len(missing)} variable(s) without a saved value "
            f"({', '.join(missing[:5])}) and {len(extra)} saved value(s) without a variable "
            f"({', '.join(extra[:5])}); did the config or the model change?")
    for key, var in zip(keys, variables):
        value = saved[key]
        if tuple(var.shape) != value.shape:
            raise ValueError(f"checkpoint {what}: {key} has shape {tuple(var.shape)}, saved "
                             f"{value.shape}")
        var.assign(value)
