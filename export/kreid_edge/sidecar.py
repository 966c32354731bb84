"""The model sidecar: one schema, one strict reader and one writer for every model file.

Every model kreid writes (``embedding.keras``, each exported ``.tflite``,
``.onnx`` and SavedModel) has a sidecar ``<model file>.json``::

    {"schema": "kreid-sidecar/1", "input_size": [H, W], "preprocessing": "scale",
     "model": "lunet", "format": "keras", "embedding_dim": 128, ...}

``input_size`` and ``preprocessing`` are required: without them a runtime
would feed the network wrongly scaled images and produce meaningless
embeddings without a word. Other keys (the dataset, the training step, the
int8 I/O type, the fingerprint of the model it was exported from) are kept in
``extra``. Files written before the schema key existed are read the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os

from kreid_edge.files import write_text
from kreid_edge.preprocessing import PREPROCESSING

SCHEMA = "kreid-sidecar/1"


class SidecarError(ValueError):
    """The model's sidecar JSON is missing, unreadable or incomplete."""


@dataclasses.dataclass(frozen=True)
class Sidecar:
    """What a runtime must know about a model file besides its weights."""

    input_size: tuple[int, int]          # (H, W)
    preprocessing: str                   # one of kreid_edge.preprocessing.PREPROCESSING
    model: str = "model"                 # architecture name (kreid.models registry)
    format: str = "keras"                # keras | saved_model | tflite_* | onnx_*
    embedding_dim: int | None = None
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"schema": SCHEMA, "input_size": list(self.input_size),
               "preprocessing": self.preprocessing, "model": self.model, "format": self.format}
        if self.embedding_dim is not None:
            out["embedding_dim"] = int(self.embedding_dim)
        return {**self.extra, **out}

    def replace(self, **changes) -> "Sidecar":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, meta: dict, where: str = "sidecar") -> "Sidecar":
        if not isinstance(meta, dict):
            raise SidecarError(f"{where}: expected a JSON object, got {type(meta).__name__}")
        for key in ("input_size", "preprocessing"):
            if key not in meta:
                raise SidecarError(f"{where}: field {key!r} is missing")
        size = meta["input_size"]
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or not all(isinstance(v, int) and v > 0 for v in size)):
            raise SidecarError(f"{where}: field 'input_size' must be [H, W] positive integers, "
                               f"got {size!r}")
        if meta["preprocessing"] not in PREPROCESSING:
            raise SidecarError(f"{where}: field 'preprocessing' must be one of {PREPROCESSING}, "
                               f"got {meta['preprocessing']!r}")
        dim = meta.get("embedding_dim")
        if dim is not None and not (isinstance(dim, int) and dim > 0):
            raise SidecarError(f"{where}: field 'embedding_dim' must be a positive integer, "
                               f"got {dim!r}")
        known = {"schema", "input_size", "preprocessing", "model", "format", "embedding_dim"}
        return cls((int(size[0]), int(size[1])), str(meta["preprocessing"]),
                   str(meta.get("model", "model")), str(meta.get("format", "keras")), dim,
                   {k: v for k, v in meta.items() if k not in known})


def sidecar_path(model_path: str) -> str:
    return model_path.rstrip("/" + os.sep) + ".json"


def read_sidecar(model_path: str, supply: str = "") -> Sidecar:
    """The sidecar of ``model_path``; strict: a missing or incomplete one is an error.

    ``supply``: how the caller lets a user supply the values instead (a flag
    such as ``--preprocessing``), named in the error.
    """
    path = sidecar_path(model_path)
    hint = f"; {supply}" if supply else ""
    if not os.path.isfile(path):
        raise SidecarError(f"{path}: missing sidecar JSON (input_size, preprocessing) for "
                           f"{model_path}{hint}")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise SidecarError(f"{path}: unreadable sidecar JSON ({exc}){hint}") from exc
    return Sidecar.from_dict(meta, path)


def write_sidecar(model_path: str, sidecar: Sidecar) -> str:
    """Write ``<model_path>.json`` atomically; returns its path."""
    return write_text(sidecar_path(model_path), json.dumps(sidecar.to_dict(), indent=2) + "\n")
