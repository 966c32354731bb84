"""Helpers shared by the dataset loaders: checked folders, listed images, parsed names."""

from __future__ import annotations

import os
import re
from typing import Iterable

import numpy as np

from kreid.errors import DatasetLayoutError, EmptySplitError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def find_root(root: str, candidates: Iterable[str], marker: str) -> str:
    """Return ``root`` or the first ``root/candidate`` that contains ``marker``."""
    root = os.path.abspath(os.path.expanduser(root))
    for base in [root] + [os.path.join(root, c) for c in candidates]:
        if os.path.exists(os.path.join(base, marker)):
            return base
    raise DatasetLayoutError(
        f"{root}: expected {marker!r} directly inside it or inside one of "
        f"{list(candidates)}; none found")


def require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise DatasetLayoutError(f"{path}: missing folder ({what})")
    return path


def require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise DatasetLayoutError(f"{path}: missing file ({what})")
    return path


def list_images(folder: str) -> list[str]:
    """Sorted image file names (not paths) directly inside ``folder``."""
    return sorted(f for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))


def parse(pattern: re.Pattern, name: str, folder: str, expected: str) -> tuple[str, ...]:
    match = pattern.match(name)
    if match is None:
        raise DatasetLayoutError(
            f"{os.path.join(folder, name)}: file name does not parse; expected {expected}")
    return match.groups()


def split_identities(pids: Iterable[int], num_test: int, seed: int) -> tuple[set, set]:
    """Seeded disjoint (train, test) identity sets; ``num_test`` identities go to test."""
    pids = np.array(sorted(set(pids)))
    if len(pids) < 2:
        raise EmptySplitError(f"only {len(pids)} usable identities: a train/test split needs "
                              "at least 2")
    if not 0 < num_test < len(pids):
        raise ValueError(f"num_test_ids={num_test} must be in 1..{len(pids) - 1}")
    perm = np.random.default_rng(seed).permutation(len(pids))
    test = set(pids[perm[:num_test]].tolist())
    return set(pids.tolist()) - test, test
