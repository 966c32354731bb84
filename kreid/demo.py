"""The main job on the embedded default, end to end (``make demo``).

1. generate the synthetic set (Market-1501 layout) and load it;
2. save a grid image of one PK batch from the tf.data pipeline;
3. train a small ResNet for a few minutes (:func:`demo_config`, which
   ``configs/demo_synthetic.py`` also serves: the package ships its own config);
4. evaluate on the synthetic test split (mAP/CMC printed, figures written);
5. export float32 and full-integer int8 TFLite and float32 ONNX
   (:data:`DEMO_FORMATS`; ``formats="all"`` adds the SavedModel, float16 and
   dynamic-range int8 TFLite and int8 ONNX) and print the quantized-accuracy
   table: what accuracy the edge model keeps.
"""

from __future__ import annotations

import json
import os
import time

# The formats the demo exports and scores: float32 and full-integer int8 TFLite (the edge
# model and what it keeps) and float32 ONNX. Every format (SavedModel, float16 and
# dynamic-range int8 TFLite, int8 ONNX) is ``formats="all"`` here or bin/export.py; the
# four left out cost about 40 s of the demo (BENCHMARKS.md, make demo).
DEMO_FORMATS = ("tflite_float32", "tflite_int8", "onnx_float32")


def demo_config():
    """The `make demo` training run: a narrow basic-block ResNet on the synthetic set.

    ``resnet_edge`` with widths 24-48-96-192 (1.75 M parameters) at 64x32, joint
    normalised softmax (s=16) + soft-margin batch hard, 600 steps of P=8 x K=4 at
    Adam 2e-3 decayed as Eq. (9) over the second half. Chosen by measurement (issue
    #26, BENCHMARKS.md "make demo on any CPU"): its training step costs an eighth
    of LuNet's on an AVX2 CPU (812 against 99 images/s here with oneDNN held to
    AVX2), which took the old LuNet demo 21 minutes on a 2-core AVX2 machine;
    it reaches synthetic test mAP 72% (center_flip TTA) and its int8 file keeps
    it. A smoke run: accuracy claims come from the real data (see
    configs/cuhk03_labeled_cpu.py). ``configs/lunet_synthetic.py`` is the LuNet
    run the demo used before.
    """
    from kreid.training.config import base_config

    c = base_config()
    c.dataset.root = "demo_out/synthetic"
    c.model.name = "resnet_edge"
    c.model.kwargs = dict(widths=(24, 48, 96, 192))
    c.image_size = (64, 32)
    c.batch.p, c.batch.k = 8, 4
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=1.0, margin="soft"))
    c.schedule = dict(kind="exponential", base_lr=2e-3, t0=300, t1=600, unit="step")
    c.total_steps = 600
    c.checkpoint_every = 100
    c.log_every = 25
    c.histogram_every = 100
    c.final_eval = dict(enabled=True, tta="center_flip", protocol="market")
    # float32 on every CPU: the same model everywhere, and bfloat16 gained nothing here
    # (31 s of training against 30 s, AVX512-BF16) while losing 6 mAP points (66% / 72%)
    c.precision = "float32"
    return c


def export_formats(formats) -> tuple[str, ...] | None:
    """None or empty -> :data:`DEMO_FORMATS`; "all" (or ["all"]) -> None, the exporter's
    every format; a name or list of names as given, an unknown one refused before training."""
    if isinstance(formats, str):
        formats = [formats]
    if not formats:                      # None, or an empty --formats=
        return DEMO_FORMATS
    if list(formats) == ["all"]:
        return None
    from kreid.errors import ConfigValueError
    from kreid.export.formats import FORMATS

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:                          # before minutes of training, not after
        raise ConfigValueError(f"--formats: unknown {', '.join(unknown)}; choose from "
                               f"{', '.join(FORMATS)} or all")
    return tuple(formats)


def _pk_grid(ds, workdir: str, seed: int) -> str:
    import cv2

    from kreid.data import pipeline
    from kreid.evaluation import reports

    images, labels = next(iter(pipeline.train_dataset(ds.train, 8, 4, (128, 64), seed=seed)))
    path = os.path.join(workdir, "pk_batch.png")
    cv2.imwrite(path, reports.batch_grid(images.numpy(), labels.numpy(), 4)[..., ::-1])
    return path


def run(workdir: str, seed: int = 0, total_steps: int | None = None,
        formats: tuple[str, ...] | str | None = None, precision: str | None = None) -> dict:
    """The demo into ``workdir``; ``formats``: None for :data:`DEMO_FORMATS`, "all" for
    every export format, or a list of them; ``precision``: None for the config's
    ``auto``, or a :data:`kreid.training.precision.PRECISIONS` value."""
    from kreid.data import datasets
    from kreid.evaluation import reports, runner
    from kreid.training.plan import resolve
    from kreid.training.trainer import Trainer

    start = time.perf_counter()
    formats = export_formats(formats)
    os.makedirs(workdir, exist_ok=True)
    config = demo_config()
    config.seed = seed
    if precision:
        config.precision = precision
    config.dataset.root = os.path.join(workdir, "synthetic")
    if total_steps:
        config.total_steps = total_steps
        config.schedule.t0, config.schedule.t1 = total_steps // 2, total_steps
    plan = resolve(config)
    ds = datasets.load(plan.dataset.name, plan.dataset.root)
    print(ds.summary())
    print("PK batch grid:", _pk_grid(ds, workdir, seed))

    train_dir = os.path.join(workdir, "train")
    print(f"training {plan.model.name} at {plan.image_size} for "
          f"{plan.stages[0].steps} steps (resumes if interrupted) ...")
    trainer = Trainer(plan, train_dir)
    print(f"precision: {trainer.precision} (config: {plan.precision})")
    phases = {"setup": time.perf_counter() - start}
    result = trainer.run()
    phases["train"] = time.perf_counter() - start - sum(phases.values())
    tta = plan.final_eval.tta
    res, q, g = runner.evaluate_embedder(result.embedder, result.dataset, tta=tta,
                                         report_dir=os.path.join(workdir, "report"),
                                         label=plan.model.name)
    print(f"test ({tta} TTA): {reports.summary_line(res)}")
    print(f"figures: {os.path.join(workdir, 'report')}")
    summary = {"train_dir": train_dir, "precision": result.precision,
               "test": {"mAP": res["mAP"], "rank1": res["cmc"][0]}}

    phases["evaluate"] = time.perf_counter() - start - sum(phases.values())
    from kreid.export import compare

    table = compare.export_and_compare(
        result.embedding_path, result.dataset, os.path.join(workdir, "export"),
        formats=formats, calibration_records=result.dataset.train, tta="none")
    print(compare.markdown_table(table))
    summary["export"] = table["rows"]
    phases["export"] = time.perf_counter() - start - sum(phases.values())
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["phase_seconds"] = {k: round(v, 1) for k, v in phases.items()}
    reports.write_json(summary, os.path.join(workdir, "demo_summary.json"))
    print(f"done in {summary['seconds']:.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" for k, v in summary["phase_seconds"].items())
          + f"); summary: {os.path.join(workdir, 'demo_summary.json')}")
    return json.loads(json.dumps(reports.to_jsonable(summary)))
