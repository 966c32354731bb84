"""How well a trained model fits its *training* identities versus the test identities.

    .venv/bin/python benchmarks/train_fit.py --model=runs/c03/embedding.keras \
        --root=../shared/data/cuhk03_labeled

Builds the README protocol (lowest-numbered image of each camera as query,
the rest as gallery) on the first ``--ids`` training identities and scores it
beside the test split: a model that retrieves its own training identities
poorly across cameras is underfitting (train longer, or give it capacity), one
that retrieves them well but not the test identities is overfitting.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

MODEL = flags.DEFINE_string("model", None, "embedding model (.keras/.tflite/.onnx)", required=True)
ROOT = flags.DEFINE_string("root", "../shared/data/cuhk03_labeled", "CUHK03 folder layout")
IDS = flags.DEFINE_integer("ids", 100, "training identities scored")
TTA = flags.DEFINE_string("tta", "none", "test-time augmentation")


def main(argv):
    del argv
    import numpy as np

    from kreid.data import datasets
    from kreid.data.datasets.cuhk03 import query_gallery_split
    from kreid.evaluation import distances, embed, metrics, protocols

    ds = datasets.load("cuhk03", ROOT.value)
    embedder = embed.load_embedder(MODEL.value)
    ids = set(sorted({r.pid for r in ds.train})[:IDS.value])
    train = query_gallery_split([r for r in ds.train if r.pid in ids])
    splits = {f"train ({len(ids)} ids)": train,
              "test": (ds.query, ds.gallery)}
    for name, (query, gallery) in splits.items():
        q = embed.embed_records(embedder, query, tta=TTA.value, progress=False)
        g = embed.embed_records(embedder, gallery, tta=TTA.value, progress=False)
        dist = distances.distance_matrix(q.embeddings, g.embeddings, "euclidean")
        args = (np.array([r.pid for r in query]), np.array([r.pid for r in gallery]),
                np.array([r.camid for r in query]), np.array([r.camid for r in gallery]))
        full = metrics.evaluate(dist, *args)
        sgs = protocols.cuhk03_single_gallery_shot(dist, *args)
        print(f"{name:16s} mAP {100 * full['mAP']:5.1f}%  SGS rank-1 {100 * sgs['cmc'][0]:5.1f}%  "
              f"SGS rank-5 {100 * sgs['cmc'][4]:5.1f}%")


if __name__ == "__main__":
    app.run(main)
