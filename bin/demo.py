"""Run the main job end to end on the embedded synthetic dataset:
generate data -> train a small ResNet -> evaluate -> export (float and int8 TFLite,
ONNX) -> print the accuracy each exported format keeps."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from kreid.training.precision import PRECISIONS  # noqa: E402  (imports no TensorFlow)

WORKDIR = flags.DEFINE_string("workdir", "demo_out", "where data, models and reports go")
SEED = flags.DEFINE_integer("seed", 0, "random seed")
STEPS = flags.DEFINE_integer("steps", 0,
                             "training steps (0: the demo config's, configs/demo_synthetic.py)")
FORMATS = flags.DEFINE_list("formats", None, "export formats (default: float32 and int8 "
                            "TFLite, float32 ONNX; 'all' adds the SavedModel, float16 and "
                            "dynamic-range int8 TFLite, int8 ONNX)")

PRECISION = flags.DEFINE_enum("precision", None, list(PRECISIONS),
                              "training precision (default: the demo config's, float32; "
                              "auto: bfloat16 where the hardware has it)")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # the converters log every graph pass at INFO
    from kreid import demo

    demo.run(WORKDIR.value, seed=SEED.value, total_steps=STEPS.value or None,
             formats=FORMATS.value, precision=PRECISION.value)


if __name__ == "__main__":
    from kreid.cli import run

    run(main)
