"""Shared fixtures: tiny valid images and the path of the real data (../shared/data)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

_DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


def write_image(path: str, seed: int = 0, size=(24, 12)) -> str:
    """Write a small random image (format from the extension) and return its path."""
    import cv2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    assert cv2.imwrite(path, img), path
    return path


@pytest.fixture(scope="session")
def real_data() -> str:
    root = os.environ.get("KREID_DATA", _DEFAULT_DATA)
    if not os.path.isdir(os.path.join(root, "cuhk03_labeled")):
        pytest.skip(f"real data not found at {root} (set KREID_DATA)")
    return os.path.abspath(root)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> str:
    from kreid.data import synthetic

    root = str(tmp_path_factory.mktemp("synthetic"))
    synthetic.generate(root, num_identities=24, num_cameras=3, seed=0)
    return root
