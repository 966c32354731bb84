"""Export a trained embedding model and report the accuracy each format keeps.

    python bin/export.py --model=runs/c03/embedding.keras --dataset=cuhk03 \
        --root=../shared/data/cuhk03_labeled --out=runs/c03/export

Writes every format of kreid.export.formats (SavedModel; TFLite float32,
float16, dynamic-range int8, full int8, int16x8, mixed int8 with the most
sensitive layers in float; ONNX float32 and int8; and for a quantization-aware
model, embedding.qat.keras, its QAT int8 TFLite file), each with a sidecar
.json, and, unless --nocompare, the quantized-accuracy table
(quantized_accuracy.md / .json) on the dataset's query/gallery split.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

MODEL = flags.DEFINE_string("model", None, "embedding model (.keras with its .json sidecar)",
                            required=True)
DATASET = flags.DEFINE_string("dataset", None, "dataset for calibration and scoring",
                              required=True)
ROOT = flags.DEFINE_string("root", None, "dataset root", required=True)
OUT = flags.DEFINE_string("out", None, "output folder", required=True)
FORMATS = flags.DEFINE_list("formats", None, "subset of formats (default: all)")
NUM_CAL = flags.DEFINE_integer("num_calibration", 200, "calibration images (from train)")
IO_TYPE = flags.DEFINE_enum("io_type", "int8", ["int8", "uint8", "float32"],
                            "input/output type of the full-integer TFLite model")
INT8_RANGES = flags.DEFINE_enum("int8_ranges", "image_mse",
                                ["minmax", "percentile", "mse", "image_mse"],
                                "activation ranges of tflite_int8: TFLite's calibrated "
                                "min/max, or clipped (kreid.export.ranges; image_mse, the "
                                "default, counts each calibration image the same)")
MIXED = flags.DEFINE_integer("mixed_float_layers", 3,
                             "tflite_mixed_int8: how many of the layers that add the largest "
                             "int8 error (TFLite's QuantizationDebugger) stay in float")
COMPARE = flags.DEFINE_bool("compare", True, "score every format and write the table")
TTA = flags.DEFINE_enum("tta", "none", ["none", "center", "center_flip", "five", "five_flip"],
                        "test-time augmentation for the comparison")
PROTOCOL = flags.DEFINE_enum("protocol", "market", ["market", "cuhk03_sgs"], "protocol")
THRESHOLD = flags.DEFINE_float("threshold", 1.0,
                               "mAP points lost above which the worst layers are reported")
PREPROCESSING = flags.DEFINE_enum("preprocessing", None, ["scale", "imagenet", "torch", "none"],
                                  "input preprocessing of --model; needed when its .json "
                                  "sidecar is missing (overrides it otherwise)")
SUPPLY = "pass --preprocessing=scale|imagenet|torch|none (the one the model was trained with)"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # the converters log every graph pass at INFO
    from kreid.data import datasets
    from kreid.export import compare, formats

    ds = datasets.load(DATASET.value, ROOT.value)
    if COMPARE.value:
        table = compare.export_and_compare(MODEL.value, ds, OUT.value, FORMATS.value,
                                           num_calibration=NUM_CAL.value, tta=TTA.value,
                                           protocol=PROTOCOL.value, threshold=THRESHOLD.value,
                                           io_type=IO_TYPE.value,
                                           preprocessing=PREPROCESSING.value, supply=SUPPLY,
                                           int8_ranges=INT8_RANGES.value,
                                           mixed_float_layers=MIXED.value)
        print(compare.markdown_table(table))
        return
    for fmt, path in formats.export_keras_file(
            MODEL.value, OUT.value, ds.train, FORMATS.value, NUM_CAL.value, IO_TYPE.value,
            PREPROCESSING.value, SUPPLY, INT8_RANGES.value, MIXED.value).items():
        print(f"{fmt}: {path}")


if __name__ == "__main__":
    from kreid.cli import run

    run(main)
