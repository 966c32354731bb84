"""The main job (make demo) end to end, shortened: data, PK grid, training, evaluation,
export and the quantized-accuracy table."""

import os

from kreid import demo


def test_demo_end_to_end(tmp_path, capsys):
    summary = demo.run(str(tmp_path), total_steps=4, formats=["tflite_int8"])
    out = capsys.readouterr().out
    assert "Quantized-model accuracy" in out and "tflite_int8" in out
    for name in ("pk_batch.png", "demo_summary.json", "report/cmc.png", "report/metrics.json",
                 "report/retrieval.png", "train/embedding.keras",
                 "export/lunet.int8.tflite", "export/lunet.int8.tflite.json",
                 "export/quantized_accuracy.md"):
        assert os.path.exists(tmp_path / name), name
    assert [r["format"] for r in summary["export"]] == ["keras_float32", "tflite_int8"]
    assert 0.0 <= summary["test"]["mAP"] <= 1.0
