"""Fixtures for the image tests: the tiny CLIP model, its reference encoder, photos and odd images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.models.image import build_tiny_clip_model

# scikit-image's bundled photos: real images that ship with a package.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip_model(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def reference_model(tiny_clip_dir: Path):
    from sentence_transformers import SentenceTransformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SentenceTransformer(str(tiny_clip_dir), device="cpu")


@pytest.fixture(scope="session")
def embedder(tiny_clip_dir: Path):
    from toolkit.images.embedder import ClipImageEmbedder

    return ClipImageEmbedder(str(tiny_clip_dir), precision="fp32", batch_size=4)  # the reference path


@pytest.fixture(scope="session")
def reference_vector(reference_model):
    """The reference path of the issue: encode(exif_transpose(Image.open(p))) at full size."""
    from PIL import Image, ImageOps

    def encode(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return reference_model.encode(ImageOps.exif_transpose(image))

    return encode


@pytest.fixture(scope="session")
def photo_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """scikit-image photos upscaled to 1600 px on the long side, saved as quality-90 JPEGs."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(data, name)())
        scale = 1600 / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        path = folder / f"{name}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
