"""The main job (make demo) end to end, shortened: data, PK grid, training, evaluation,
export and the quantized-accuracy table."""

import os

from kreid import demo


def test_demo_end_to_end(tmp_path, capsys):
    summary = demo.run(str(tmp_path), total_steps=4, formats=["tflite_int8"])
    out = capsys.readouterr().out
    assert "Quantized-model accuracy" in out and "tflite_int8" in out
    assert "precision: float32 (config: float32)" in out
    for name in ("pk_batch.png", "demo_summary.json", "report/cmc.png", "report/metrics.json",
                 "report/retrieval.png", "train/embedding.keras",
                 "export/resnet_edge.int8.tflite", "export/resnet_edge.int8.tflite.json",
                 "export/quantized_accuracy.md"):
        assert os.path.exists(tmp_path / name), name
    assert [r["format"] for r in summary["export"]] == ["keras_float32", "tflite_int8"]
    assert 0.0 <= summary["test"]["mAP"] <= 1.0


def test_demo_config_ships_in_the_package(tmp_path):
    """make demo must not read configs/ by file path (a non-editable install has none): the
    package's own demo_config resolves to the demo's run plan from any folder, and the
    demo's run builds its config from it alone."""
    import inspect
    import subprocess
    import sys

    assert "configs" not in inspect.getsource(demo.run)
    code = ("from kreid.demo import demo_config; from kreid.training.plan import resolve; "
            "p = resolve(demo_config()); "
            "print(p.model.name, p.image_size, p.precision, p.stages[0].steps, "
            "sorted(t.name for t in p.terms))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == \
        "resnet_edge (64, 32) float32 600 ['am_softmax', 'batch_hard']"


def test_demo_formats():
    """The default exports DEMO_FORMATS (float and int8 TFLite, float ONNX), "all" every format."""
    from kreid.export import formats

    assert demo.export_formats(None) == demo.DEMO_FORMATS
    assert demo.export_formats("all") is None and demo.export_formats(["all"]) is None
    assert demo.export_formats(["tflite_int8"]) == ("tflite_int8",)
    assert demo.export_formats("tflite_int8") == ("tflite_int8",)
    assert demo.export_formats([]) == demo.DEMO_FORMATS
    assert set(demo.DEMO_FORMATS) < set(formats.FORMATS)
    import pytest

    from kreid.errors import ConfigValueError
    with pytest.raises(ConfigValueError, match="--formats: unknown tflite_int4"):
        demo.export_formats(["tflite_int8", "tflite_int4"])


def test_demo_refuses_unknown_formats_before_training(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, os.path.join(repo, "bin", "demo.py"),
                          f"--workdir={tmp_path / 'd'}", "--formats=bogus"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "--formats: unknown bogus" in run.stderr
    assert not os.path.exists(tmp_path / "d")          # nothing made, nothing trained
