"""Where a QAT int8 file parts from its fake-quantized Keras model, layer by layer (#27).

    .venv/bin/python benchmarks/qat_layers.py --model=runs/c03_lunet_s0/embedding.qat.keras \\
        --tflite=runs/c03_lunet_s0/export_qat/lunet.qat_int8.tflite \\
        --dataset=cuhk03 --root=../shared/data/cuhk03_labeled

The converter turns every fake-quant op of the model into an int8 tensor with the
same range: so each quantizer's output can be compared between the Keras model
(float arithmetic, then rounding) and the int8 file (integer kernels: fixed-point
requantization, TFLite's own rounding). For each quantizer, in graph order, it
prints the mean absolute difference in quantization steps, the share of values
more than one step apart and the cosine between the two, over ``--images`` test
images; the first layers where these grow are where the int8 file starts to
differ from what was trained.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

MODEL = flags.DEFINE_string("model", None, "quantization-aware model (embedding.qat.keras)",
                            required=True)
TFLITE = flags.DEFINE_string("tflite", None, "its tflite_qat_int8 file", required=True)
DATASET = flags.DEFINE_string("dataset", "cuhk03", "dataset of the test images")
ROOT = flags.DEFINE_string("root", None, "dataset root", required=True)
IMAGES = flags.DEFINE_integer("images", 16, "test images compared")


def main(argv):
    del argv
    import warnings

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from kreid.data import datasets
    from kreid.evaluation.embed import keras_sidecar
    from kreid.export import convert
    from kreid.models import all_layers, load_model, qat

    ds = datasets.load(DATASET.value, ROOT.value)
    side = keras_sidecar(MODEL.value)
    model = load_model(MODEL.value)
    spec = convert.ExportSpec(tuple(int(v) for v in model.input_shape[1:3]),
                              side.preprocessing)
    images = convert.calibration_images(ds.query + ds.gallery, spec, IMAGES.value, seed=3)
    quantizers = [l for l in all_layers(model) if isinstance(l, qat.FakeQuant)]
    keras_values = {}                 # each quantizer's output, recorded as the model runs

    def recorder(layer, call):
        def recorded(x, *args, **kwargs):
            out = call(x, *args, **kwargs)
            keras_values[layer.name] = np.asarray(out)
            return out
        return recorded

    for layer in quantizers:
        layer.call = recorder(layer, layer.call)
    model(images, training=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = Interpreter(model_path=TFLITE.value, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType
                             .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    details = interp.get_tensor_details()
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(images.shape))
    interp.allocate_tensors()
    scale, zero = inp["quantization"]
    interp.set_tensor(inp["index"], np.clip(np.round(images / scale + zero), -128, 127)
                      .astype(np.int8))
    interp.invoke()
    print(f"{'quantizer':58s} steps  >1 step  cosine")
    for name, want in keras_values.items():
        match = [d for d in details if name in d["name"].split(";")[0]
                 and d["dtype"] == np.int8]
        if not match:
            continue
        d = match[-1]
        s, z = d["quantization"]
        got = (interp.get_tensor(d["index"]).astype(np.float64) - z) * s
        want = np.asarray(want, np.float64)
        if got.shape != want.shape:
            continue
        diff = np.abs(got - want) / s
        a, b = got.reshape(len(got), -1), want.reshape(len(want), -1)
        cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) *
                                            np.linalg.norm(b, axis=1), 1e-12)
        print(f"{name[:58]:58s} {diff.mean():5.2f}  {np.mean(diff > 1.01):6.1%}  "
              f"{cos.mean():.4f}")


if __name__ == "__main__":
    app.run(main)
