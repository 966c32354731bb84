"""Selective quantization: k layers in float, the rest int8, against accuracy, size and
latency (#27).

    .venv/bin/python benchmarks/int8_mixed.py --model=runs/mbv2p_s0/embedding.keras \\
        --dataset=cuhk03 --root=../shared/data/cuhk03_labeled --ks=0,1,2,3,5,8

For each k, two ways to keep the k ops TFLite's QuantizationDebugger ranks as
adding the largest int8 error (``kreid.export.convert.layer_errors``) in float:

- ``denylist`` - kreid's ``tflite_mixed_int8``: the converter's MLIR quantizer with
  those nodes denylisted, every other activation range kreid's (``image_mse``);
- ``litert_quantizer`` - litert-quantizer's per-op recipe (static int8 A8W8 with its
  min/max calibration on the same 200 images, ``no_quantize`` for the k ops), when
  the package is installed (``pip install litert-quantizer``; not a kreid
  dependency).

Each file is scored on the test split (market protocol, or ``--protocol``), no TTA,
with its size and single-thread latency (median of 30 calls at batch 1; the CPU it
ran on is printed first). Prints a markdown table.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

MODEL = flags.DEFINE_string("model", None, "float embedding model (.keras + sidecar)",
                            required=True)
DATASET = flags.DEFINE_string("dataset", "cuhk03", "dataset for calibration and scoring")
ROOT = flags.DEFINE_string("root", None, "dataset root", required=True)
KS = flags.DEFINE_list("ks", ["0", "1", "2", "3", "5", "8"], "how many layers stay float")
PROTOCOL = flags.DEFINE_string("protocol", "market", "scoring protocol")
NUM_CAL = flags.DEFINE_integer("num_calibration", 200, "calibration images (from train)")


def litert_mixed(float_tflite: str, out: str, keep: list[str], calibration) -> str | None:
    """litert-quantizer's static int8 with the ops writing ``keep`` left float, int8 I/O;
    None when the package is not installed."""
    try:
        from litert_quantizer import calibrator, quantizer
    except ImportError:
        return None
    a8w8 = {"activation_tensor_config": {"num_bits": 8, "symmetric": False,
                                         "granularity": "TENSORWISE", "dtype": "INT"},
            "weight_tensor_config": {"num_bits": 8, "symmetric": True,
                                     "granularity": "CHANNELWISE", "dtype": "INT"},
            "compute_precision": "INTEGER", "explicit_dequantize": False}
    recipe = [{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize",
               "op_config": a8w8}]
    # an op's scope is its output names joined by ";" with a trailing ";"
    recipe += [{"regex": "^" + re.escape(name.split(";")[0]) + ";", "operation": "*",
                "algorithm_key": "no_quantize"} for name in keep]
    qt = quantizer.Quantizer(float_tflite, recipe)
    from ai_edge_litert.interpreter import Interpreter

    key = Interpreter(model_path=float_tflite).get_signature_list()
    signature = next(iter(key))
    name = key[signature]["inputs"][0]
    data = {signature: [{name: calibration[i:i + 1]} for i in range(len(calibration))]}
    calib = qt.calibrate(data, num_threads=1,
                         mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED)
    qt.quantize(calib, enable_progress_report=False).export_model(out, overwrite=True)
    return out


def main(argv):
    del argv
    from kreid.data import datasets
    from kreid.evaluation.embed import KerasEmbedder, embed_records
    from kreid.evaluation.runner import score
    from kreid.export import compare, convert, formats
    from kreid_edge import cpu

    ds = datasets.load(DATASET.value, ROOT.value)
    work = tempfile.mkdtemp(prefix="kreid_int8_mixed_")
    try:
        with formats.ExportJob.from_keras_file(MODEL.value, ["tflite_int8"], ds.train,
                                               NUM_CAL.value) as job:
            ref_emb = KerasEmbedder(job.model, job.spec.preprocessing)
            fq = embed_records(ref_emb, ds.query, progress=False)
            fg = embed_records(ref_emb, ds.gallery, progress=False)
            ref, _ = score(fq, fg, protocol=PROTOCOL.value)
            import numpy as np

            ref_both = np.concatenate([fq.embeddings, fg.embeddings])
            errors = convert.layer_errors(job.saved_model_dir(), job.calibration)
            float_file = os.path.join(work, "float.tflite")
            convert.tflite(job.saved_model_dir(), float_file, "float32")
            print(f"CPU: {cpu.describe()}")
            print(f"float mAP {100 * ref['mAP']:.2f}%; layers by int8 error: "
                  + ", ".join(f"{r['tensor'].split(';')[0]} ({r['rmse/scale']:.2f})"
                              for r in errors[:8]))
            print("| k | method | mAP | delta mAP (pts) | rank-1 | cosine | size (MB) | "
                  "ms/img 1 thread |\n|---|---|---|---|---|---|---|---|")
            for k in (int(v) for v in KS.value):
                keep = [r["tensor"] for r in errors[:k]]
                files = {}
                path = os.path.join(work, f"mixed{k}.tflite")
                convert.tflite(job.saved_model_dir(), path, "int8", job.calibration,
                               job.io_type, job.int8_ranges, float_nodes=keep)
                files["denylist"] = path
                other = litert_mixed(float_file, os.path.join(work, f"lq{k}.tflite"), keep,
                                     job.calibration)
                if other:
                    files["litert_quantizer"] = other
                for method, path in files.items():
                    convert.write_sidecar(path, job.spec, "tflite_mixed_int8",
                                          {"runtime": "tflite"})
                    row = compare.score_file(path, ds, "none", PROTOCOL.value, ref, ref_both)
                    print(f"| {k} | {method} | {100 * row['mAP']:.2f}% | "
                          f"{row['delta_mAP']:+.2f} | {100 * row['rank1']:.2f}% | "
                          f"{row['cosine']:.4f} | {row['size_mb']:.2f} | "
                          f"{row['latency_ms_1t']:.2f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
