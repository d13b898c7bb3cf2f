"""Hostile images: refused before allocating, never blocking, formats named with their fix."""

from __future__ import annotations

import io
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile

from tests.lib.hostile_helpers import finishes, make_special
from tests.lib.ingest_helpers import CountingEmbedder
from toolkit.errors import ImageError
from toolkit.images import decode
from toolkit.images.decode import DEFAULT_PREPROCESSING, check_size, load_image, prepare
from toolkit.images.embedder import embed_paths


def _png(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
    Image.new(mode, size, 128).save(path)
    return path


def _reason(source: Any, **kwargs: Any) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source, **kwargs)
    return info.value.reason


# --- pixel bombs --------------------------------------------------------------------------------------


def test_a_thin_strip_is_refused_before_the_resize_makes_a_billion_pixels(tmp_path: Path) -> None:
    # 20000x1 (60 KB) passed the source-size cap; resizing its short side to 224 made 4,480,000x224
    # pixels: 10 GB of memory in ingest and search --image.
    strip = _png(tmp_path / "strip.png", (20000, 1))
    assert "extreme aspect ratio: 20000x1 is 20000:1, over the limit of 100:1" in _reason(strip)
    # Without the aspect limit, the resized size alone is refused, before any pixel is allocated.
    reason = _reason(strip, max_aspect_ratio=None)
    assert "too large once resized" in reason and "4480000x224" in reason
    tall = _png(tmp_path / "tall.png", (1, 40000))
    assert "1x40000 is 40000:1" in _reason(tall)


def test_strips_within_the_limits_still_embed(tmp_path: Path) -> None:
    image = load_image(_png(tmp_path / "ok.png", (1, 100)))
    assert prepare(image).shape == (224, 224, 3)
    assert load_image(_png(tmp_path / "one.png", (1, 1))).size == (1, 1)


def test_check_size_reads_only_the_header_numbers() -> None:
    with pytest.raises(ImageError, match="no pixels"):
        check_size(0, 10, name="x")
    with pytest.raises(ImageError, match="too large once resized"):
        check_size(2000, 1, name="x", max_aspect_ratio=None, max_pixels=1_000_000)
    check_size(9000, 9000, name="x")  # big but within every limit
    check_size(5000, 10, name="x", target=1 << 30, max_aspect_ratio=None)  # no resize: no resized check


def test_ingest_decoding_fails_the_strip_alone(tmp_path: Path) -> None:
    good = _png(tmp_path / "good.png", (300, 200))
    strip = _png(tmp_path / "strip.png", (20000, 1))
    results = list(embed_paths([good, strip, good], CountingEmbedder(batch_size=2), workers=2))
    assert [type(r).__name__ for _, r in results] == ["ndarray", "ImageError", "ndarray"]
    assert "aspect ratio" in results[1][1].reason


def test_prepare_refuses_an_image_made_elsewhere_that_would_resize_huge() -> None:
    with pytest.raises(ImageError, match="too large once resized"):
        prepare(Image.new("RGB", (30000, 1)), DEFAULT_PREPROCESSING)


def test_search_by_image_refuses_the_strip_before_loading_the_model(tmp_path: Path) -> None:
    from toolkit.search import embed_query_image
    from toolkit.settings import load_settings

    settings = load_settings(environ={}, cwd=tmp_path)

    class NoModel:
        preprocessing = DEFAULT_PREPROCESSING

        def embed(self, images: Any) -> Any:
            raise AssertionError("must not embed")

    with pytest.raises(ImageError, match="aspect ratio"):
        embed_query_image(_png(tmp_path / "strip.png", (20000, 1)), settings, embedder=NoModel())


# --- special files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ["fifo", "dev_zero", "folder"])
def test_special_files_are_refused_without_blocking(tmp_path: Path, make: str) -> None:
    path = make_special(tmp_path / "x.jpg", make)  # /dev/zero read forever (and ignored Ctrl-C) before
    with pytest.raises(ImageError, match="not a regular file"):
        finishes(load_image, path)


def test_a_local_file_over_max_bytes_is_refused(tmp_path: Path) -> None:
    path = _png(tmp_path / "big.png", (300, 300))
    assert "file too large" in _reason(path, max_bytes=100)
    assert load_image(path, max_bytes=10_000_000).size == (300, 300)


def test_the_file_is_closed_after_decoding(tmp_path: Path) -> None:
    path = _png(tmp_path / "a.png", (50, 40))
    before = len(os.listdir("/proc/self/fd"))
    images = [load_image(path) for _ in range(20)]
    assert len(os.listdir("/proc/self/fd")) <= before + 1
    assert all(np.asarray(image).shape == (40, 50, 3) for image in images)  # still usable


# --- formats Pillow cannot read -----------------------------------------------------------------------

_FORMATS = {
    "heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, ("HEIC", "pillow-heif")),
    "avif": (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64, ("AVIF", "convert")),
    "jxl": (b"\xff\x0a\xfa\x7f" + b"\x00" * 64, ("JPEG XL", "pillow-jxl-plugin")),
    "jxl_box": (b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00" * 64, ("JPEG XL", "pillow-jxl-plugin")),
    "svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', ("SVG", "rasterize")),
    "svg_bare": (b'  <svg width="10" height="10"></svg>', ("SVG", "rasterize")),
    "pdf": (b"%PDF-1.7\n%\xe2\xe3\n", ("PDF", "pdftoppm")),
    "psb": (b"8BPS\x00\x02" + b"\x00" * 64, ("PSB", "save it as")),
    "bigtiff": (b"II+\x00\x08\x00\x00\x00" + b"\x00" * 64, ("BigTIFF", "plain TIFF")),
    "cr3": (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + b"\x00" * 64, ("Canon CR3", "raw converter")),
    "raf": (b"FUJIFILMCCD-RAW 0201" + b"\x00" * 64, ("Fujifilm RAF", "raw converter")),
    "mp4": (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 64, ("video", "ffmpeg")),
    "html": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", ("HTML page", "error page")),
    "lfs": (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n", ("Git LFS", "git lfs pull")),
    "zip": (b"PK\x03\x04" + b"\x00" * 64, ("ZIP", "unzip")),
    "zeros": (b"\x00" * 4096, ("zero bytes", "incomplete")),
    "exr": (b"v/1\x01\x02\x00\x00\x00" + b"\x00" * 64, ("OpenEXR", "convert")),
    "dicom": (b"\x00" * 128 + b"DICM" + b"\x01" * 64, ("DICOM", "pydicom")),
}


@pytest.mark.parametrize("kind", sorted(_FORMATS))
def test_formats_pillow_cannot_read_are_named_with_the_fix(tmp_path: Path, kind: str) -> None:
    data, words = _FORMATS[kind]
    path = tmp_path / f"photo.{kind}.jpg"
    path.write_bytes(data)
    for source in (path, data):  # a file and a download say the same
        reason = _reason(source)
        assert "unrecognized" not in reason
        assert all(word in reason for word in words), reason


def test_an_installed_plugin_is_used_for_its_format(tmp_path: Path, monkeypatch) -> None:
    """A stand-in for pillow-heif: registering it makes the HEIC file decode (real module: guess of its
    API from pillow_heif's README, ``register_heif_opener()``)."""
    header = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"

    class FakeHeif(ImageFile.ImageFile):
        format = "HEIF"

        def _open(self) -> None:
            self.fp.read(len(header))
            self._size = (4, 2)
            self._mode = "RGB"
            self.tile = [ImageFile._Tile("raw", (0, 0, 4, 2), len(header), ("RGB", 0, 1))]

    registered: list[bool] = []

    def register_heif_opener() -> None:
        Image.register_open("HEIF", FakeHeif, lambda prefix: prefix[4:12] == b"ftypheic")
        registered.append(True)

    monkeypatch.setitem(sys.modules, "pillow_heif",
                        types.SimpleNamespace(register_heif_opener=register_heif_opener))
    monkeypatch.setattr(decode, "_plugins_tried", {})
    monkeypatch.setattr(Image, "ID", list(Image.ID))
    monkeypatch.setattr(Image, "OPEN", dict(Image.OPEN))
    path = tmp_path / "phone.heic"
    path.write_bytes(header + bytes(range(24)))
    image = load_image(path)
    assert registered == [True] and image.size == (4, 2)
    assert np.asarray(image)[0, 0].tolist() == [0, 1, 2]


def test_plain_text_named_jpg_is_still_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("shopping list\n")
    assert _reason(path) == "not an image (unrecognized file format)"


# --- names --------------------------------------------------------------------------------------------


def test_names_with_escape_sequences_print_as_escapes(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/\x1b]0;pwned\x07\nx\xff.jpg"
    with open(raw, "wb") as fh:
        fh.write(b"not an image")
    path = Path(os.fsdecode(raw))
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.path.endswith("/\\x1b]0;pwned\\x07\\nx\\xff.jpg")
    assert "\x1b" not in info.value.message and "\n" not in info.value.message
    info.value.message.encode("utf-8")  # printable: no lone surrogates left


# --- more hostile images ------------------------------------------------------------------------------


def _bytes(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_truncated_png_and_exif_orientation_on_a_strip(tmp_path: Path) -> None:
    data = _bytes(Image.effect_noise((300, 300), 50).convert("RGB"), "PNG")
    assert "truncated" in _reason(data[: len(data) // 2]) or "corrupt" in _reason(data[: len(data) // 2])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: 1x20000 once displayed, refused all the same
    strip = _bytes(Image.new("RGB", (20000, 1)), "JPEG", exif=exif.tobytes())
    assert "aspect ratio" in _reason(strip)


def test_apng_16bit_and_huge_icc_profile_decode(tmp_path: Path) -> None:
    frames = [Image.new("RGBA", (64, 48), (255, 0, 0, 128)), Image.new("RGBA", (64, 48), (0, 255, 0, 255))]
    apng = _bytes(frames[0], "PNG", save_all=True, append_images=frames[1:])
    assert load_image(apng).size == (64, 48)
    sixteen = Image.fromarray(np.full((40, 30), 60000, dtype=np.uint16))
    assert load_image(_bytes(sixteen, "PNG")).mode == "RGB"
    icc = b"\x00" * (2 << 20)  # 2 MiB of junk profile: ignored, as the reference ignores it
    assert load_image(_bytes(Image.new("RGB", (32, 32)), "JPEG", icc_profile=icc)).size == (32, 32)


def test_a_corrupt_exif_block_decodes_without_a_warning_on_stderr() -> None:
    import struct
    import warnings

    jpeg = _bytes(Image.new("RGB", (40, 30), (10, 20, 30)), "JPEG")
    body = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x00" * 10  # 65535 entries claimed, 10 bytes
    broken = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 2 + len(body)) + body + jpeg[2:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's "Corrupt EXIF data" UserWarning was printed mid-run
        assert load_image(broken).size == (40, 30)
