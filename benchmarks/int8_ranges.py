"""Which int8 activation ranges keep the float model: minmax, percentile, mse, image_mse.

    .venv/bin/python benchmarks/int8_ranges.py --model=runs/mbv2_s0/embedding.keras \
        --root=../shared/data/cuhk03_labeled

For each method of :mod:`kreid.export.ranges` the full-integer TFLite model
(int8 input and output, the 200 calibration images of ``bin/export.py``) is
scored twice:

- **selection**: the cosine between its embeddings and the float model's on
  ``--num_select`` *training* images outside the calibration set. This needs no
  labels and no test image, so a method (or the default) can be chosen on it;
- **test**: mAP and rank-1 on the query/gallery split (market protocol, no
  TTA) against the float32 model, the figure the export table reports.

A benchmark, not a test: one JSON line per method.
"""

import json
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

MODEL = flags.DEFINE_string("model", None, "embedding model (.keras with its sidecar)",
                            required=True)
DATASET = flags.DEFINE_string("dataset", "cuhk03", "dataset for calibration and scoring")
ROOT = flags.DEFINE_string("root", None, "dataset root", required=True)
METHODS = flags.DEFINE_list("methods", ["minmax", "percentile", "mse", "image_mse"],
                            "range methods")
NUM_CAL = flags.DEFINE_integer("num_calibration", 200, "calibration images (from train)")
NUM_SELECT = flags.DEFINE_integer("num_select", 400, "training images outside calibration "
                                  "for the label-free selection score")


def main(argv):
    del argv
    import warnings

    import numpy as np

    from kreid.data import datasets
    from kreid.evaluation.embed import KerasEmbedder, embed_records, keras_sidecar
    from kreid.evaluation.runner import score
    from kreid.export import convert
    from kreid.export.compare import cosine_to_reference
    from kreid.models import load_model
    from kreid_edge import load_embedder

    warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
    convert.quiet_converters()
    ds = datasets.load(DATASET.value, ROOT.value)
    sidecar = keras_sidecar(MODEL.value)
    model = load_model(MODEL.value)
    float_emb = KerasEmbedder(model, sidecar.preprocessing, MODEL.value)
    spec = convert.ExportSpec(tuple(int(v) for v in model.input_shape[1:3]),
                              sidecar.preprocessing, sidecar.model, float_emb.fingerprint)
    train = list(ds.train)
    cal = convert.calibration_images(train, spec, NUM_CAL.value)   # bin/export.py's pick
    used = set(convert.calibration_pick(len(train), NUM_CAL.value).tolist())
    rest = [r for i, r in enumerate(train) if i not in used]
    select = convert.calibration_images(rest, spec, min(NUM_SELECT.value, len(rest)), seed=1)
    ref_select = float_emb(select)
    fq = embed_records(float_emb, ds.query, progress=False)
    fg = embed_records(float_emb, ds.gallery, progress=False)
    ref, _ = score(fq, fg, protocol="market")
    work = tempfile.mkdtemp(prefix="kreid_int8_ranges_")
    try:
        sm = convert.saved_model(model, os.path.join(work, "model.savedmodel"))
        for method in METHODS.value:
            path = os.path.join(work, f"{method}.int8.tflite")
            convert.tflite(sm, path, "int8", cal, "int8", method)
            convert.write_sidecar(path, spec, "tflite_int8", {"io_type": "int8",
                                                               "int8_ranges": method})
            emb = load_embedder(path, num_threads=2)
            cos = cosine_to_reference(np.asarray(emb(select)), ref_select)
            q = embed_records(emb, ds.query, progress=False)
            g = embed_records(emb, ds.gallery, progress=False)
            res, _ = score(q, g, protocol="market")
            print(json.dumps({
                "model": MODEL.value, "method": method,
                "select_cosine_mean": round(float(cos.mean()), 5),
                "select_cosine_p05": round(float(np.percentile(cos, 5)), 5),
                "float_mAP": round(100 * ref["mAP"], 2), "int8_mAP": round(100 * res["mAP"], 2),
                "delta_mAP": round(100 * (res["mAP"] - ref["mAP"]), 2),
                "delta_rank1": round(100 * (res["cmc"][0] - ref["cmc"][0]), 2)}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
