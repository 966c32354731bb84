"""Embed a dataset's splits with a model and write embedding files (.npz).

    python bin/embed.py --dataset=cuhk03 --root=../shared/data/cuhk03_labeled \
        --model=runs/lunet/embedding.keras --tta=five_flip --output=runs/lunet/emb
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

DATASET = flags.DEFINE_string("dataset", None, "dataset name (kreid.data.datasets)", required=True)
ROOT = flags.DEFINE_string("root", None, "dataset root folder", required=True)
MODEL = flags.DEFINE_string("model", None, ".keras, .tflite or .onnx model", required=True)
SPLITS = flags.DEFINE_list("splits", ["query", "gallery"], "splits to embed")
TTA = flags.DEFINE_enum("tta", "none", ["none", "center", "center_flip", "five", "five_flip"],
                        "test-time augmentation")
NORMALIZE = flags.DEFINE_bool("normalize", False, "L2-normalise views before averaging")
BATCH = flags.DEFINE_integer("batch_size", 64, "images per model call, TTA views included "
                             "(bounds memory whatever the TTA and the dataset size)")
PREPROCESSING = flags.DEFINE_enum("preprocessing", None, ["scale", "imagenet", "torch", "none"],
                                  "input preprocessing of a .keras --model without its .json "
                                  "sidecar")
OUTPUT = flags.DEFINE_string("output", None, "output folder for <split>.npz", required=True)


def main(argv):
    del argv
    from kreid.data import datasets
    from kreid.evaluation.embed import embed_records, load_embedder

    ds = datasets.load(DATASET.value, ROOT.value)
    embedder = load_embedder(MODEL.value, preprocessing=PREPROCESSING.value,
                             supply="pass --preprocessing=scale|imagenet|torch|none")
    for split in SPLITS.value:
        if split not in ("train", "query", "gallery"):
            raise app.UsageError(f"--splits: unknown split {split!r}")
        out = embed_records(embedder, getattr(ds, split), TTA.value, BATCH.value,
                            NORMALIZE.value, label=split)
        out.meta.update(dataset=DATASET.value, model=MODEL.value, split=split)
        print(out.save(os.path.join(OUTPUT.value, f"{split}.npz")))


if __name__ == "__main__":
    from kreid.cli import run

    run(main)
