"""Image files: one check of what training and the device will accept, and a strict reader.

The format is taken from the file's first bytes, never from its extension (a
JPEG saved as ``.png`` is a JPEG). A JPEG is complete when its marker
structure, walked from the start-of-image marker through every segment and
entropy-coded scan, reaches the end-of-image marker: a truncated file does
not; bytes after the end-of-image marker are allowed (decoders ignore them).
OpenCV decodes a truncated JPEG with only a warning and TensorFlow refuses it,
so the device refuses what training refuses.
"""

from __future__ import annotations

import os

import numpy as np


class ImageFileError(ValueError):
    """An image file is missing, truncated or not a decodable image; names the file."""


def image_format(head: bytes) -> str | None:
    """``jpeg``, ``png``, ``bmp``, ``gif`` from the first bytes, or None."""
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:4] == b"\x89PNG":
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:3] == b"GIF":
        return "gif"
    return None


def jpeg_end(data: bytes) -> int | None:
    """Offset just past the end-of-image marker of the JPEG ``data``, or None if it has none.

    Walks the markers: segments carry a 2-byte length; after a start-of-scan
    (SOS) segment the entropy-coded data runs to the next marker that is not
    a stuffed ``FF 00`` or a restart marker ``FF D0``-``FF D7``.
    """
    n, i = len(data), 2
    if data[:2] != b"\xff\xd8":
        return None
    while i < n:
        if data[i] != 0xFF:
            return None                      # garbage where a marker must stand
        while i < n and data[i] == 0xFF:      # fill bytes
            i += 1
        if i >= n:
            return None
        marker = data[i]
        i += 1
        if marker == 0xD9:                   # EOI
            return i
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue                         # markers without a length
        if i + 2 > n:
            return None
        length = (data[i] << 8) | data[i + 1]
        if length < 2:
            return None
        i += length
        if marker != 0xDA:                   # not SOS: next marker follows the segment
            continue
        while True:                          # entropy-coded data of the scan
            j = data.find(b"\xff", i)
            if j < 0 or j + 1 >= n:
                return None
            following = data[j + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                i = j + 2
            elif following == 0xFF:
                i = j + 1
            else:
                i = j
                break
    return None


def _decode(path: str) -> tuple[str | None, np.ndarray | None]:
    """(why the file is unusable or None, the decoded BGR image or None)."""
    import cv2

    if not os.path.isfile(path):
        return "missing file", None
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        return "empty file", None
    kind = image_format(data[:4])
    if kind is None:
        return "not a JPEG/PNG/BMP/GIF image", None
    if kind == "jpeg" and jpeg_end(data) is None:
        return "truncated or corrupt JPEG (no end-of-image marker)", None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return f"not a decodable {kind.upper()} image", None
    return None, image


def image_problem(path: str) -> str | None:
    """None if ``path`` is an image training and the device can read, else why it is not."""
    return _decode(path)[0]


def read_image(path: str) -> np.ndarray:
    """The BGR uint8 image at ``path``; :class:`ImageFileError` naming it when unreadable."""
    problem, image = _decode(path)
    if problem is not None:
        raise ImageFileError(f"{path}: {problem}")
    return image
