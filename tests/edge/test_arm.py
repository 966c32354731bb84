"""The exported files on ARM (#26): benchmarks/arm_check.py runs kreid-edge on aarch64
under qemu-user and compares with x86. Runs where qemu-aarch64-static is installed and
the aarch64 packages can be fetched (once, into $KREID_CACHE/aarch64); skipped, saying
which, elsewhere."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def aarch64():
    if not shutil.which("qemu-aarch64-static"):
        pytest.skip("qemu-aarch64-static not installed (apt-get install qemu-user-static): "
                    "the ARM check cannot run here")
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import arm_check

        try:
            return arm_check.prepare()
        except arm_check.ArmUnavailable as exc:
            pytest.skip(f"the emulated aarch64 environment cannot be made here: {exc}")
    finally:
        sys.path.remove(os.path.join(REPO, "benchmarks"))


def test_int8_and_float_files_give_the_same_embeddings_on_aarch64(aarch64, synthetic_root,
                                                                 tmp_path):
    import keras

    from kreid.export import convert, formats

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(8)(x))
    cal = np.random.default_rng(0).random((16, 64, 32, 3)).astype(np.float32)
    paths = formats.export_all(model, str(tmp_path), convert.ExportSpec((64, 32), "scale",
                                                                        "tiny"),
                               ["tflite_float32", "tflite_int8"], cal)
    out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "arm_check.py"),
                          f"--models={paths['tflite_int8']},{paths['tflite_float32']}",
                          "--dataset=synthetic", f"--root={synthetic_root}", "--limit=3"],
                         capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if "cosine aarch64 vs x86_64" in line]
    assert len(lines) == 2, out.stdout
    for line in lines:
        low = float(re.search(r"min ([0-9.]+)", line).group(1))
        assert low > (0.99 if "int8" in line else 0.99999), line
        assert "aarch64 mAP" in line and "x86_64 mAP" in line
