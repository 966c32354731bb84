"""Export: converters to SavedModel / TFLite / ONNX and the quantized-accuracy comparison.

The TensorFlow-free runtime that runs the exported files lives in the
top-level ``export/kreid_edge`` package.
"""
