"""Shared pieces of the ingest tests: images (good and broken), a counting fake embedder, a set-up index."""

from __future__ import annotations

import atexit
import io
import json
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from toolkit.images.embedder import ImageEmbedder
from toolkit.settings import Settings, load_settings

DIMS = 64


class CountingEmbedder(ImageEmbedder):
    """A fake embedder: 64 dims from the pixels (never zero), counts every image it embeds."""

    dims = DIMS
    model_name = "fake-clip"

    def __init__(self, batch_size: int = 4) -> None:
        self.batch_size = batch_size
        self.embedded = 0
        self.batches = 0

    def embed_batch(self, pixel_values: Any) -> np.ndarray:
        self.batches += 1
        self.embedded += int(pixel_values.shape[0])
        means = pixel_values.mean(dim=(2, 3)).numpy()  # [N, 3]
        out = np.ones((pixel_values.shape[0], DIMS), dtype=np.float32)
        out[:, :3] += means
        return out


def fake_model_dir() -> Path:
    """The JSON files of a 64-dim CLIP model (no weights): enough for ``toolkit setup``'s dims check."""
    global _FAKE_MODEL
    if _FAKE_MODEL is None:
        root = Path(tempfile.mkdtemp(prefix="toolkit-fake-clip-"))
        atexit.register(shutil.rmtree, root, True)
        (root / "0_CLIPModel").mkdir()
        (root / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "0_CLIPModel",
                                                        "type": "sentence_transformers.models.CLIPModel"}]))
        (root / "0_CLIPModel" / "config.json").write_text(json.dumps({"projection_dim": DIMS}))
        _FAKE_MODEL = root
    return _FAKE_MODEL


_FAKE_MODEL: Path | None = None


def make_settings(url: str, **overrides: Any) -> Settings:
    """Test settings: the cluster URL, 64-dim image vectors, fast retries."""
    values = {"elasticsearch.url": url, "index.image_dims": DIMS, "ingest.initial_backoff": 0.01,
              "image_model.name": str(fake_model_dir()),
              "ingest.max_backoff": 0.05, "ingest.download_workers": 4, "image_model.batch_size": 4}
    values.update(overrides)
    return load_settings(overrides=values, environ={}, cwd=Path("/nonexistent-toolkit-test-dir"))


def setup_index(client: Any, settings: Settings, *, plain_pipeline: bool = True) -> None:
    """``toolkit setup``; with ``plain_pipeline`` the caption pipeline is replaced by one that does
    nothing (no text model is deployed in these tests, so the inference processor would fail)."""
    from toolkit import provision

    provision.setup(client, settings)
    if plain_pipeline:
        client.ingest.put_pipeline(id=settings.index.pipeline, processors=[
            {"remove": {"field": "no_such_field", "ignore_missing": True}}])


def count_docs(client: Any, settings: Settings) -> int:
    client.indices.refresh(index=settings.index.alias)
    return int(client.count(index=settings.index.alias)["count"])


def jpeg_bytes(size: tuple[int, int] = (80, 60), color: tuple[int, int, int] = (200, 30, 30),
               exif_orientation: int | None = None, quality: int = 90) -> bytes:
    image = Image.new("RGB", size, color)
    # A gradient so images differ in content and compress to a real JPEG.
    for x in range(0, size[0], 4):
        image.paste((x % 256, color[1], (x * 3) % 256), (x, 0, x + 2, size[1]))
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(image: Image.Image, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **kwargs)
    return buf.getvalue()


def huge_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims a huge size (a decompression bomb): no pixel data at all."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def good_images(folder: Path, n: int, prefix: str = "img") -> list[Path]:
    """``n`` distinct small JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}{i:03d}.jpg"
        path.write_bytes(jpeg_bytes((64 + i, 48), color=(10 * i % 256, 100, 50)))
        paths.append(path)
    return paths


def mixed_folder(folder: Path) -> dict[str, str]:
    """A folder of every tricky case. Returns file name -> expected outcome (indexed/failed/skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    expect: dict[str, str] = {}

    def put(name: str, data: bytes, outcome: str) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        expect[name] = outcome

    good = jpeg_bytes((120, 90))
    put("plain.jpg", good, "indexed")
    put("sub/copy-of-plain.jpg", good, "skipped")  # same content: same id, a duplicate
    put("truncated.jpg", jpeg_bytes((300, 200))[:700], "failed")
    put("empty.jpg", b"", "failed")
    put("text.jpg", b"this is not an image, just text\n" * 4, "failed")
    put("bomb.png", huge_png_header(), "failed")
    cmyk = io.BytesIO()
    Image.new("CMYK", (70, 50), (10, 200, 30, 5)).save(cmyk, "JPEG")
    put("cmyk.jpg", cmyk.getvalue(), "indexed")
    sixteen = Image.fromarray((np.arange(60 * 40, dtype=np.uint16).reshape(40, 60) * 20).astype(np.uint16))
    put("sixteen.png", png_bytes(sixteen), "indexed")
    palette = Image.new("P", (50, 50), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    put("palette.png", png_bytes(palette, transparency=0), "indexed")
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", gif.getvalue(), "indexed")
    put("rotated.jpg", jpeg_bytes((100, 40), exif_orientation=6), "indexed")
    (folder / "notes.txt").write_text("not an image extension: ignored, counted\n")
    return expect
