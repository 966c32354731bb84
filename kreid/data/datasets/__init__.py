"""Dataset registry: ``load(name, root, **options)`` -> :class:`ReidDataset`.

Adding a dataset is one module with a ``@register("name")`` loader plus one
import line below. Loaders read the dataset's exact on-disk layout and raise
:class:`kreid.errors.DatasetLayoutError` naming the path when it is wrong.
"""

from __future__ import annotations

from typing import Callable

from kreid.data.records import ReidDataset

_REGISTRY: dict[str, Callable[..., ReidDataset]] = {}


def register(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn
    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def load(name: str, root: str, **options) -> ReidDataset:
    """Load dataset ``name`` from ``root``; options are loader specific."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name](root, **options)


# One import per module; each registers its loaders.
from kreid.data.datasets import market1501  # noqa: E402,F401
from kreid.data.datasets import msmt17  # noqa: E402,F401
from kreid.data.datasets import cuhk03  # noqa: E402,F401
from kreid.data.datasets import peta  # noqa: E402,F401
from kreid.data.datasets import mars  # noqa: E402,F401
from kreid.data.datasets import vehicles  # noqa: E402,F401
from kreid.data.datasets import generic  # noqa: E402,F401
from kreid.data.datasets import joint  # noqa: E402,F401
from kreid.data.datasets import unlabelled  # noqa: E402,F401
from kreid.data.datasets import pseudo  # noqa: E402,F401
