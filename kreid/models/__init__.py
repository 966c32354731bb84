"""Model registry: ``build(name, input_shape=(H, W, 3), embedding_dim=128, **kwargs)``.

Every model maps images (preprocessed as the model's ``preprocessing`` says)
to embeddings and is a Keras functional model whose convolutional part is the
nested sub-model ``backbone`` (so it can be frozen). Heads for the joint losses
live in :mod:`kreid.models.heads`.
"""

from __future__ import annotations

from typing import Callable

import os

import keras

_REGISTRY: dict[str, Callable[..., keras.Model]] = {}
# Input scaling each model expects (see kreid.data.augment.preprocess).
PREPROCESSING: dict[str, str] = {}


def register(name: str, preprocessing: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        PREPROCESSING[name] = preprocessing
        return fn
    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)


def _require(name: str) -> None:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(names())}")


def preprocessing(name: str, weights=None) -> str:
    """The input scaling model ``name`` expects (an unknown name lists the registered ones);
    PyTorch ``weights`` (a ``.pt``/``.pth`` file or an offline source of
    :mod:`kreid.models.weights`) were trained on ``torch`` scaling."""
    _require(name)
    from kreid.models.weights import is_torch_file
    return "torch" if is_torch_file(weights) else PREPROCESSING[name]


def check_arguments(name: str, kwargs: dict) -> None:
    """Refuse keyword arguments model ``name`` does not take, naming those it does."""
    import inspect

    from kreid.errors import ConfigError

    _require(name)
    takes = [p for p in inspect.signature(_REGISTRY[name]).parameters
             if p not in ("input_shape", "embedding_dim")]     # both set by build's arguments
    if "embedding_dim" in kwargs:
        raise ConfigError(f"{name}: embedding_dim is its own setting (config.model."
                          "embedding_dim), not one of the model's keyword arguments")
    unknown = sorted(set(kwargs) - set(takes))
    if unknown:
        raise ConfigError(f"{name} takes no argument {', '.join(unknown)}; its arguments: "
                          f"{', '.join(takes)}")


def build(name: str, input_shape=(128, 64, 3), embedding_dim: int | None = None,
          **kwargs) -> keras.Model:
    """Build model ``name``; ``embedding_dim`` None keeps the model's own default
    (128 for lunet, trinet, mobilenet_edge, mobilenet_v2 and resnet_edge; 2048 for
    resnet50_reid)."""
    _require(name)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape}")
    if embedding_dim is not None:
        kwargs["embedding_dim"] = embedding_dim
    return _REGISTRY[name](tuple(input_shape), **kwargs)


def load_model(path: str) -> keras.Model:
    """A saved ``.keras`` model of kreid (embedding.keras, final.keras), in any process:
    every layer they can hold (LuNet's pool padding, the channel slice, the classifier
    heads, the quantization-aware layers) is registered before loading; safe mode, no
    compile."""
    import kreid.models.heads  # noqa: F401
    import kreid.models.qat  # noqa: F401

    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    return keras.models.load_model(path, safe_mode=True, compile=False)


def init_from(path: str, model: keras.Model) -> None:
    """Copy the weights of a saved kreid model (a run's ``embedding.keras``) into ``model``,
    built by the same config: the start of a fine-tuning or an adaptation run. Every
    weight must match in order and shape; the first that does not is named, with the
    file."""
    from kreid.errors import ConfigValueError

    try:
        source = load_model(path)
    except FileNotFoundError as exc:
        raise ConfigValueError(f"config.init_from={path!r}: {exc}") from exc
    src, dst = source.weights, model.weights
    if len(src) != len(dst):
        raise ConfigValueError(
            f"config.init_from={path!r}: the file's model has {len(src)} weights, this "
            f"run's {model.name!r} has {len(dst)}; train with the config that made the file "
            "(config.model, config.image_size)")
    for a, b in zip(src, dst):
        if tuple(a.shape) != tuple(b.shape):
            raise ConfigValueError(
                f"config.init_from={path!r}: weight {a.path} has shape {tuple(a.shape)}, this "
                f"run's {b.path} {tuple(b.shape)}")
    for a, b in zip(src, dst):
        b.assign(a)


def all_layers(model: keras.Model) -> list:
    """``model`` and every layer inside it, nested sub-models and layers' own sublayers
    included (Keras 3 has no public recursive walk: this is the one call to its private
    one)."""
    return list(model._flatten_layers())  # noqa: SLF001


def freeze_backbone(model: keras.Model, frozen: bool = True) -> None:
    """Freeze (or unfreeze) the nested ``backbone`` sub-model, e.g. for MPN's stage 2."""
    model.get_layer("backbone").trainable = not frozen


from kreid.models import lunet, mobilenet, resnet  # noqa: E402,F401  (register models)
