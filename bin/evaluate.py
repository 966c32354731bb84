"""Evaluate from embedding files, or embed a dataset with a model and evaluate it.

    python bin/evaluate.py --query=emb/query.npz --gallery=emb/gallery.npz --rerank
    python bin/evaluate.py --model=runs/lunet/embedding.keras --dataset=cuhk03 \
        --root=../shared/data/cuhk03_labeled --tta=five_flip --report_dir=runs/lunet/report
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

QUERY = flags.DEFINE_string("query", None, "query embedding file (.npz from bin/embed.py)")
GALLERY = flags.DEFINE_string("gallery", None, "gallery embedding file")
MODEL = flags.DEFINE_string("model", None, "model to embed with (instead of files)")
DATASET = flags.DEFINE_string("dataset", None, "dataset name, with --model")
ROOT = flags.DEFINE_string("root", None, "dataset root, with --model")
TTA = flags.DEFINE_enum("tta", "none", ["none", "center", "center_flip", "five", "five_flip"],
                        "test-time augmentation, with --model")
METRIC = flags.DEFINE_enum("metric", "euclidean", ["euclidean", "sqeuclidean", "cosine"],
                           "distance")
RERANK = flags.DEFINE_bool("rerank", False, "k-reciprocal re-ranking (Zhong et al. 2017)")
AP = flags.DEFINE_enum("ap", "standard", ["standard", "market"], "average precision variant")
PROTOCOL = flags.DEFINE_enum("protocol", "market",
                             ["market", "multi_query", "tracklet", "cuhk03_sgs"], "protocol")
MAX_RANK = flags.DEFINE_integer("max_rank", 50, "CMC length")
POOL = flags.DEFINE_enum("pool", "avg", ["avg", "max"],
                         "multi_query / tracklet pooling (Hermans et al.: avg for triplet "
                         "models, max for classification models)")
REPORT = flags.DEFINE_string("report_dir", None, "write metrics.json and figures here")
PREPROCESSING = flags.DEFINE_enum("preprocessing", None, ["scale", "imagenet", "torch", "none"],
                                  "input preprocessing of a .keras --model without its .json "
                                  "sidecar")
MIXED = flags.DEFINE_bool("allow_mixed_models", False,
                          "compare query and gallery files embedded by different models "
                          "(refused by default: their distances are meaningless)")


def main(argv):
    del argv
    from kreid.evaluation import reports, runner
    from kreid.evaluation.embed import EmbeddingSet, embed_records, load_embedder

    if MODEL.value:
        if not (DATASET.value and ROOT.value):
            raise app.UsageError("--model needs --dataset and --root")
        from kreid.data import datasets

        ds = datasets.load(DATASET.value, ROOT.value)
        embedder = load_embedder(MODEL.value, preprocessing=PREPROCESSING.value,
                                 supply="pass --preprocessing=scale|imagenet|torch|none")
        q = embed_records(embedder, ds.query, TTA.value, label="query")
        g = embed_records(embedder, ds.gallery, TTA.value, label="gallery")
    elif QUERY.value and GALLERY.value:
        q, g = EmbeddingSet.load(QUERY.value), EmbeddingSet.load(GALLERY.value)
        for flag, path, value in (("--query", QUERY.value, q), ("--gallery", GALLERY.value, g)):
            if not len(value):
                raise app.UsageError(f"{flag}={path}: the embedding file holds no embeddings "
                                     "(an empty split?)")
    else:
        raise app.UsageError("give --query and --gallery files, or --model with --dataset/--root")
    res, dist = runner.score(q, g, METRIC.value, PROTOCOL.value, RERANK.value, AP.value,
                             MAX_RANK.value, allow_mixed_models=MIXED.value, pool=POOL.value)
    print(reports.summary_line(res))
    if REPORT.value:
        files = runner.write_report(res, q, g, dist, REPORT.value)
        print("report:", ", ".join(files.values()))


if __name__ == "__main__":
    from kreid.cli import run

    run(main)
