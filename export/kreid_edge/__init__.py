"""kreid-edge: TFLite / ONNX ReID embedders and a gallery matcher without TensorFlow.

Imports only numpy, opencv and (lazily) ai-edge-litert or onnxruntime.
"""

from kreid_edge.runtime import (OnnxEmbedder, Preprocessor, SidecarError, TFLiteEmbedder,
                                load_embedder, read_sidecar)
from kreid_edge.matcher import GalleryMatcher

__all__ = ["TFLiteEmbedder", "OnnxEmbedder", "Preprocessor", "GalleryMatcher", "load_embedder",
           "read_sidecar", "SidecarError"]
