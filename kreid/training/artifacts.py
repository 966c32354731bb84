"""What a finished run leaves for evaluation and export: the trained model files.

``embedding.keras`` is the embedding-only model (training heads stripped;
f_id only when attribute heads trained f_attr, Sabri et al. Eq. 7)
with its sidecar ``embedding.keras.json`` (:mod:`kreid_edge.sidecar`: input
size, preprocessing, architecture, embedding size, dataset, step, weights
fingerprint); ``final.keras`` adds the classifier heads as extra outputs.
Both are written atomically.
"""

from __future__ import annotations

import os

from kreid_edge.files import atomic_write
from kreid_edge.sidecar import Sidecar, write_sidecar


def save_keras(model, path: str) -> str:
    with atomic_write(path, mode=None, suffix=".keras") as tmp:
        model.save(tmp)
    return path


def save_trained_model(model, heads: dict, workdir: str, model_name: str, dataset_name: str,
                       image_size, preprocessing: str, step: int,
                       trained_precision: str = "float32") -> str:
    """Write ``embedding.keras`` (+ sidecar) and ``final.keras`` with ``heads`` (name ->
    layer on the embedding: the terms' exported heads) as extra outputs; returns the
    first's path."""
    import keras

    from kreid.evaluation.embed import weights_fingerprint

    path = save_keras(model, os.path.join(workdir, "embedding.keras"))
    write_sidecar(path, Sidecar(tuple(image_size), preprocessing, model_name, "keras",
                                int(model.output.shape[-1]),
                                {"dataset": dataset_name, "step": step,
                                 "fingerprint": weights_fingerprint(model),
                                 "trained_precision": trained_precision}))
    images = keras.Input((*image_size, 3), name="images")
    emb = model(images)
    outputs = {"embeddings": emb}
    for name in sorted(heads):
        outputs[name] = heads[name](emb)
    save_keras(keras.Model(images, outputs, name="final"), os.path.join(workdir, "final.keras"))
    return path
