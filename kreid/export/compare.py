"""Quantized-model accuracy: the Keras model and every exported variant on the same
query/gallery, same protocol, one table.

Columns: format, file size, mAP, rank-1, delta mAP vs float (points), mean
cosine similarity between float and variant embeddings, latency per image
at batch 1 with 1 and 2 threads. When a variant loses more than
``threshold`` mAP points, TFLite's QuantizationDebugger ranks the layers by
quantization error (RMSE / scale) and the worst ones are reported.
"""

from __future__ import annotations

import os
import time

import numpy as np

from kreid.evaluation import reports
from kreid.evaluation.embed import KerasEmbedder, embed_records
from kreid.evaluation.runner import score
from kreid.export import convert, ranges
from kreid.export import formats as formats_
from kreid_edge.files import write_text


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def keras_latency(model, input_size, runs: int = 30) -> float:
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False))
    x = tf.random.uniform((1, *input_size, 3))
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def cosine_to_reference(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity of ``x`` to ``ref`` in float64; identical rows give exactly
    1 whatever their norm (tiny norms are not clamped into a wrong value), a zero row
    against a non-zero one gives 0."""
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    nx, nr = np.linalg.norm(x, axis=1), np.linalg.norm(ref, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(x * ref, 1) / (nx * nr)
    cos = np.where((nx == 0) | (nr == 0), 0.0, np.clip(cos, -1.0, 1.0))
    return np.where(np.all(x == ref, axis=1), 1.0, cos)


def worst_layers(saved_model_dir: str, calibration: np.ndarray, top: int = 5) -> list[dict]:
    """Layers with the largest int8 quantization error (RMSE / scale), by QuantizationDebugger."""
    return [{**r, "rmse/scale": round(r["rmse/scale"], 4)}
            for r in convert.layer_errors(saved_model_dir, calibration)[:top]]


def export_and_compare(keras_path: str, dataset, out_dir: str, formats=None,
                       calibration_records=None, num_calibration: int = 200, tta: str = "none",
                       protocol: str = "market", threshold: float = 1.0, io_type: str = "int8",
                       latency_runs: int = 30, debug: bool = True,
                       preprocessing: str | None = None, supply: str = "",
                       int8_ranges: str = ranges.DEFAULT,
                       mixed_float_layers: int = formats_.MIXED_FLOAT_LAYERS) -> dict:
    """Export ``keras_path`` to ``formats`` and score every variant a kreid_edge runtime
    runs; writes ``quantized_accuracy.md`` and ``.json`` into ``out_dir`` and returns the
    table.

    The model's sidecar gives its preprocessing; ``preprocessing`` overrides it
    or stands in for a missing one (``supply`` names the flag, for the error).
    Calibration images come from ``calibration_records`` (default: the
    dataset's training split).
    """
    records = calibration_records if calibration_records is not None else dataset.train
    with formats_.ExportJob.from_keras_file(keras_path, formats, records, num_calibration,
                                            io_type, int8_ranges, preprocessing, supply,
                                            calibrate=True,
                                            mixed_float_layers=mixed_float_layers) as job:
        paths = formats_.write_formats(job, out_dir, formats)
        # the reference: the model as trained, for a quantization-aware one its fake-quant
        # graph (its float view never clips at the learned ranges: not the model it is)
        qat = job.qat_model is not None
        float_emb = KerasEmbedder(job.qat_model if qat else job.model, job.spec.preprocessing,
                                  keras_path)
        fq = embed_records(float_emb, dataset.query, tta, progress=False)
        fg = embed_records(float_emb, dataset.gallery, tta, progress=False)
        ref, _ = score(fq, fg, protocol=protocol)
        rows = [{"format": "keras_qat_fake_quant" if qat else "keras_float32",
                 "size_mb": _size(keras_path) / 2 ** 20,
                 "mAP": ref["mAP"], "rank1": float(ref["cmc"][0]), "delta_mAP": 0.0,
                 "cosine": 1.0, "latency_ms_1t": None,
                 "latency_ms_2t": 1000 * keras_latency(job.model, job.spec.input_size,
                                                       latency_runs)}]
        ref_both = np.concatenate([fq.embeddings, fg.embeddings])
        for fmt, path in paths.items():
            record = formats_.FORMATS[fmt]
            if record.runtime is None:              # a SavedModel: nothing to score
                continue
            row = score_file(path, dataset, tta, protocol, ref, ref_both, latency_runs)
            row["format"] = fmt
            if debug and record.layer_report and row["delta_mAP"] < -threshold:
                row["worst_layers"] = worst_layers(job.saved_model_dir(), job.calibration)
            rows.append(row)
        num_calibration = 0 if job.calibration is None else len(job.calibration)
    from kreid_edge import cpu

    table = {"model": keras_path, "protocol": protocol, "tta": tta, "threshold": threshold,
             "num_query": len(dataset.query), "num_gallery": len(dataset.gallery),
             "num_calibration": num_calibration, "int8_ranges": int8_ranges,
             "cpu": cpu.features(), "rows": rows}
    reports.write_json(table, os.path.join(out_dir, "quantized_accuracy.json"))
    write_text(os.path.join(out_dir, "quantized_accuracy.md"), markdown_table(table) + "\n")
    return table


def score_file(path: str, dataset, tta: str, protocol: str, ref: dict,
               ref_both: np.ndarray, latency_runs: int = 30) -> dict:
    """One exported file's row: size, mAP and rank-1 on the dataset's query/gallery, the
    difference to the float model's ``ref`` and the cosine to its embeddings
    ``ref_both`` (query then gallery), and the latency per image with 1 and 2 threads."""
    from kreid_edge import load_embedder

    emb = load_embedder(path, num_threads=2)
    q = embed_records(emb, dataset.query, tta, progress=False)
    g = embed_records(emb, dataset.gallery, tta, progress=False)
    res, _ = score(q, g, protocol=protocol)
    both = np.concatenate([q.embeddings, g.embeddings])
    return {"size_mb": _size(path) / 2 ** 20, "mAP": res["mAP"],
            "rank1": float(res["cmc"][0]), "delta_mAP": 100 * (res["mAP"] - ref["mAP"]),
            "cosine": float(cosine_to_reference(both, ref_both).mean()),
            "max_abs_diff": float(np.abs(both - ref_both).max()),
            "latency_ms_1t": 1000 * load_embedder(path, 1).latency(latency_runs),
            "latency_ms_2t": 1000 * emb.latency(latency_runs)}


def markdown_table(table: dict) -> str:
    from kreid_edge import cpu

    def ms(v):
        return "-" if v is None else f"{v:.2f}"

    lines = [f"Quantized-model accuracy ({table['protocol']} protocol, TTA {table['tta']}, "
             f"{table['num_query']} queries x {table['num_gallery']} gallery, "
             f"{table['num_calibration']} calibration images, int8 activation ranges "
             f"{table.get('int8_ranges', 'minmax')})", "",
             *([f"Latency measured on {cpu.describe(table['cpu'])}", ""] if table.get("cpu")
               else []),
             f"Reference (delta, cosine): {table['rows'][0]['format']}", "",
             "| format | size (MB) | mAP | rank-1 | delta mAP (pts) | cosine to ref. | "
             "max abs diff | ms/img 1 thread | ms/img 2 threads |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table["rows"]:
        lines.append(f"| {r['format']} | {r['size_mb']:.2f} | {100 * r['mAP']:.2f}% | "
                     f"{100 * r['rank1']:.2f}% | {r['delta_mAP']:+.2f} | {r['cosine']:.4f} | "
                     f"{r.get('max_abs_diff', 0.0):.2e} | {ms(r['latency_ms_1t'])} | "
                     f"{ms(r['latency_ms_2t'])} |")
    for r in table["rows"]:
        if r.get("worst_layers"):
            lines += ["", f"{r['format']} loses more than {table['threshold']} mAP points; "
                          "layers with the largest quantization error (RMSE/scale):"]
            lines += [f"- {w['op']} `{w['tensor']}`: {w['rmse/scale']}" for w in r["worst_layers"]]
    return "\n".join(lines)
