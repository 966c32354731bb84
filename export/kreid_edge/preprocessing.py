"""Input preprocessing: the constants shared with training, and OpenCV test-time resizing.

``scale``: divide by 255 (networks trained from scratch, e.g. LuNet).
``imagenet``: Keras ResNet-50's own "caffe" preprocessing (RGB->BGR, minus the
ImageNet mean). ``torch``: [0, 1] then the ImageNet mean/std. ``none``: as is.
``kreid.data.augment.preprocess`` applies the same constants in TensorFlow.
"""

from __future__ import annotations

import numpy as np

PREPROCESSING = ("scale", "imagenet", "torch", "none")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def normalise(rgb: np.ndarray, mode: str) -> np.ndarray:
    """Map float RGB in [0, 255] to the network's input range (NumPy)."""
    if mode == "scale":
        return rgb / np.float32(255.0)
    if mode == "imagenet":
        return rgb[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, np.float32)
    if mode == "torch":
        return (rgb / np.float32(255.0) - np.asarray(TORCH_MEAN, np.float32)) / \
            np.asarray(TORCH_STD, np.float32)
    if mode == "none":
        return rgb
    raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {mode!r}")


class Preprocessor:
    """BGR uint8 images (arrays or file paths) -> preprocessed float32 batch [B, H, W, 3] RGB.

    Bilinear resize with half-pixel centres on float values, exactly as
    ``kreid.data.augment`` does at test time. Paths are read with
    :func:`kreid_edge.images.read_image`, which refuses truncated and corrupt files.
    """

    def __init__(self, input_size, preprocessing: str):
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, "
                             f"got {preprocessing!r}")
        self.preprocessing = preprocessing

    def normalise(self, rgb: np.ndarray) -> np.ndarray:
        return normalise(rgb, self.preprocessing)

    def __call__(self, images) -> np.ndarray:
        import cv2

        from kreid_edge.images import read_image

        h, w = self.input_size
        out = np.empty((len(images), h, w, 3), np.float32)
        for i, image in enumerate(images):
            if isinstance(image, str):
                image = read_image(image)
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {i}: expected H x W x 3 BGR, got shape {image.shape}")
            rgb = image[..., ::-1].astype(np.float32)
            out[i] = self.normalise(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR))
        return out
