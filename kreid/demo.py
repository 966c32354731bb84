"""The main job on the embedded default, end to end (``make demo``).

Stages so far: generate the synthetic set, load it with the Market-1501
loader, build PK batches through the tf.data pipeline and save a grid image
of one batch. Training, evaluation and export stages are appended here as
they land.
"""

from __future__ import annotations

import json
import logging
import os
import time

log = logging.getLogger(__name__)


def run(workdir: str, num_identities: int = 200, p: int = 8, k: int = 4,
        image_size: tuple[int, int] = (128, 64), seed: int = 0) -> dict:
    import cv2

    from kreid.data import datasets, pipeline

    os.makedirs(workdir, exist_ok=True)
    data_root = os.path.join(workdir, "synthetic")
    start = time.perf_counter()
    ds = datasets.load("synthetic", data_root, num_identities=num_identities, seed=seed)
    print(ds.summary())
    print(f"attributes: {', '.join(ds.attribute_names)}")
    train = pipeline.train_dataset(ds.train, p=p, k=k, image_size=image_size, seed=seed)
    images, labels = next(iter(train))
    grid = pipeline.batch_grid(images.numpy(), labels.numpy(), k)
    grid_path = os.path.join(workdir, "pk_batch.png")
    cv2.imwrite(grid_path, grid[..., ::-1])
    print(f"one PK batch (P={p}, K={k}): labels {labels.numpy().reshape(p, k)[:, 0].tolist()}"
          f" -> {grid_path}")
    summary = {"data_root": data_root, "num_train_ids": ds.num_train_ids,
               "num_query": len(ds.query), "num_gallery": len(ds.gallery),
               "pk_batch_grid": grid_path, "seconds": round(time.perf_counter() - start, 1)}
    with open(os.path.join(workdir, "demo_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary
