"""Which layers cost the int8 mAP: full-integer TFLite with some layers kept in float.

    .venv/bin/python benchmarks/int8_layers.py --model=runs/mbv2b_s0/embedding.keras \
        --dataset=cuhk03 --root=../shared/data/cuhk03_labeled --float_layers='features_2_conv1'

A diagnostic, not a test and not an export format: TFLite's QuantizationDebugger
converts the model with the tensors whose names match ``--float_layers`` (a
regular expression over the debugger's tensor names, e.g. ``features_1[4-8]_`` or
``fc1|StatefulPartitionedCall``) left in float and every other layer in int8
(float input and output), calibrated on the same 200 training images as
``bin/export.py``; then scores it, the same conversion with every layer int8
and the float32 TFLite file on the query and gallery sets (market protocol, no
TTA) and prints the mAP differences. With an
empty ``--float_layers`` it lists the tensor names it can keep in float.
"""

import csv
import io
import os
import re
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

MODEL = flags.DEFINE_string("model", None, "embedding model (.keras with its sidecar)",
                            required=True)
DATASET = flags.DEFINE_string("dataset", "cuhk03", "dataset for calibration and scoring")
ROOT = flags.DEFINE_string("root", None, "dataset root", required=True)
FLOAT_LAYERS = flags.DEFINE_string("float_layers", "", "regex of the tensors kept in float")
NUM_CAL = flags.DEFINE_integer("num_calibration", 200, "calibration images (from train)")


def main(argv):
    del argv
    from kreid.data import datasets
    from kreid.evaluation.embed import keras_sidecar, weights_fingerprint
    from kreid.export import convert
    from kreid.models import load_model

    ds = datasets.load(DATASET.value, ROOT.value)
    sidecar = keras_sidecar(MODEL.value)
    model = load_model(MODEL.value)
    spec = convert.ExportSpec(tuple(int(v) for v in model.input_shape[1:3]),
                              sidecar.preprocessing, sidecar.model, weights_fingerprint(model))
    cal = convert.calibration_images(ds.train, spec, NUM_CAL.value)
    work = tempfile.mkdtemp(prefix="kreid_int8_layers_")
    try:
        _run(model, spec, cal, ds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(model, spec, cal, ds, work):
    import tensorflow as tf

    from kreid.evaluation.embed import embed_records
    from kreid.evaluation.runner import score
    from kreid.export import convert
    from kreid_edge import load_embedder

    saved = convert.saved_model(model, os.path.join(work, "saved_model"))
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    data = lambda: ([cal[i:i + 1]] for i in range(len(cal)))  # noqa: E731
    converter.representative_dataset = data

    probe = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=lambda: ([cal[i:i + 1]] for i in range(2)))
    probe.run()
    buf = io.StringIO()
    probe.layer_statistics_dump(buf)
    names = [r["tensor_name"] for r in csv.DictReader(io.StringIO(buf.getvalue()))]
    if not FLOAT_LAYERS.value:
        print("\n".join(n.split(";")[0] for n in names))
        return
    keep = [n for n in names if re.search(FLOAT_LAYERS.value, n)]
    if not keep:
        raise app.UsageError(f"--float_layers={FLOAT_LAYERS.value!r} matches no tensor "
                             "(run without it for the list)")
    print(f"kept in float: {len(keep)} tensors, e.g. {keep[0].split(';')[0]}")
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=data,
                                                         debug_options=options)
    every = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=data)
    paths = {"float32": convert.tflite(saved, os.path.join(work, "m.float32.tflite"), "float32"),
             "int8": os.path.join(work, "m.int8.tflite"),
             "selective": os.path.join(work, "m.selective.tflite")}
    convert.write_bytes(paths["int8"], every.get_nondebug_quantized_model())
    convert.write_bytes(paths["selective"], debugger.get_nondebug_quantized_model())
    convert.write_sidecar(paths["float32"], spec, "tflite_float32")
    for name in ("int8", "selective"):
        convert.write_sidecar(paths[name], spec, "tflite_int8", {"io_type": "float32"})
    results = {}
    for name, path in paths.items():
        emb = load_embedder(path, num_threads=2)
        res, _ = score(embed_records(emb, ds.query, "none", progress=False),
                       embed_records(emb, ds.gallery, "none", progress=False),
                       protocol="market")
        results[name] = 100 * res["mAP"]
    ref = results["float32"]
    print(f"mAP float32 {ref:.2f}%; every layer int8 (this path: float input and output) "
          f"{results['int8']:.2f}% ({results['int8'] - ref:+.2f} points); "
          f"{FLOAT_LAYERS.value!r} in float {results['selective']:.2f}% "
          f"({results['selective'] - ref:+.2f} points)")


if __name__ == "__main__":
    app.run(main)
