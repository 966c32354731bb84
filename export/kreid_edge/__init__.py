"""kreid-edge: TFLite / ONNX ReID embedders and a gallery matcher without TensorFlow.

Imports only numpy, opencv and (lazily) ai-edge-litert or onnxruntime.
"""

from kreid_edge.images import ImageFileError, image_problem, read_image
from kreid_edge.matcher import GalleryError, GalleryMatcher
from kreid_edge.preprocessing import Preprocessor
from kreid_edge.runtime import OnnxEmbedder, TFLiteEmbedder, load_embedder
from kreid_edge.sidecar import Sidecar, SidecarError, read_sidecar, write_sidecar

__all__ = ["TFLiteEmbedder", "OnnxEmbedder", "Preprocessor", "GalleryMatcher", "GalleryError",
           "load_embedder", "Sidecar", "read_sidecar", "write_sidecar", "SidecarError",
           "ImageFileError", "image_problem", "read_image"]
