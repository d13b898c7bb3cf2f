"""Decoding and preprocessing: same pixels/vectors as the reference path, precise errors."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.lib.images.conftest import cosine
from toolkit.errors import ImageError
from toolkit.images.decode import ClipPreprocessing, load_image, preprocess


def _photo(width: int = 900, height: int = 600) -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee()).resize((width, height), Image.LANCZOS)


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b""
    )


def _odd_images(folder: Path) -> dict[str, Path]:
    photo = _photo()
    gray = np.asarray(photo.convert("L"))
    rgba = photo.copy()
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 900, dtype=np.uint8), (600, 1))))
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    frames = [Image.new("RGB", (500, 400), color) for color in ("red", "green", "blue")]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    return {
        "rgb_jpeg": _save(photo, folder / "rgb.jpg", quality=90),
        "progressive_jpeg": _save(photo, folder / "progressive.jpg", quality=90, progressive=True),
        "gray_jpeg": _save(photo.convert("L"), folder / "gray.jpg", quality=90),
        "cmyk_jpeg": _save(photo.convert("CMYK"), folder / "cmyk.jpg", quality=90),
        "exif_rotated_jpeg": _save(photo, folder / "rotated.jpg", quality=90, exif=exif),
        "L_png": _save(photo.convert("L"), folder / "gray.png"),
        "LA_png": _save(rgba.convert("LA"), folder / "la.png"),
        "P_transparency_png": _save(palette, folder / "palette.png", transparency=0),
        "P_transparency_gif": _save(palette, folder / "palette.gif", transparency=3),
        "RGBA_png": _save(rgba, folder / "rgba.png"),
        # 16-bit gray spanning 0..306: the reference clips above 255, we must do the same.
        "I16_png": _save(Image.fromarray((gray.astype(np.uint16) * 6) // 5), folder / "gray16.png"),
        "1_png": _save(photo.convert("1"), folder / "bilevel.png"),
        "I_tiff": _save(Image.fromarray(gray.astype(np.int32) * 2), folder / "int32.tiff"),
        "F_tiff": _save(Image.fromarray(gray.astype(np.float32) * 0.9), folder / "float.tiff"),
        "animated_gif": _save(frames[0], folder / "animated.gif", save_all=True, append_images=frames[1:]),
        "mpo_jpeg": _save(photo, folder / "camera.mpo", format="MPO", save_all=True,
                          append_images=[photo.rotate(5)]),
    }


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _odd_images(tmp_path_factory.mktemp("odd"))


def test_odd_images_have_the_modes_they_claim(odd_images):
    modes = {name: Image.open(path).mode for name, path in odd_images.items()}
    assert modes["cmyk_jpeg"] == "CMYK"
    assert modes["I16_png"].startswith("I;16")
    assert modes["P_transparency_png"] == "P"
    assert "transparency" in Image.open(odd_images["P_transparency_png"]).info
    assert modes["LA_png"] == "LA" and modes["RGBA_png"] == "RGBA" and modes["1_png"] == "1"
    assert modes["I_tiff"] == "I" and modes["F_tiff"] == "F"
    assert Image.open(odd_images["animated_gif"]).n_frames == 3


@pytest.mark.parametrize(
    "name",
    ["rgb_jpeg", "progressive_jpeg", "gray_jpeg", "cmyk_jpeg", "exif_rotated_jpeg", "L_png", "LA_png",
     "P_transparency_png", "P_transparency_gif", "RGBA_png", "I16_png", "1_png", "I_tiff", "F_tiff",
     "animated_gif", "mpo_jpeg"],
)
def test_every_mode_embeds_like_the_reference(name, odd_images, embedder, reference_vector):
    path = odd_images[name]
    reference = reference_vector(path)
    full = next(embedder.embed([load_image(path, draft=False)]))
    drafted = next(embedder.embed([load_image(path)]))
    assert cosine(full, reference) >= 0.9999, name
    assert cosine(drafted, reference) >= 0.995, name


def test_conversion_matches_pillow_rgb_conversion_pixel_for_pixel(odd_images):
    # No draft for PNG/TIFF/GIF: the decoded RGB pixels are exactly what convert("RGB") gives.
    for name in ("LA_png", "P_transparency_png", "RGBA_png", "I16_png", "1_png", "I_tiff", "F_tiff"):
        expected = np.asarray(Image.open(odd_images[name]).convert("RGB"))
        assert np.array_equal(np.asarray(load_image(odd_images[name])), expected), name


def test_animated_gif_gives_its_first_frame(odd_images):
    pixel = load_image(odd_images["animated_gif"]).getpixel((10, 10))
    assert pixel == (255, 0, 0)


def test_multi_picture_jpeg_is_drafted_too(odd_images):
    assert load_image(odd_images["mpo_jpeg"]).size == (450, 300)


def test_exif_orientation_is_applied_after_draft(odd_images):
    image = load_image(odd_images["exif_rotated_jpeg"])
    assert image.size == (300, 450)  # 900x600 drafted at 1/2, then turned upright
    assert load_image(odd_images["exif_rotated_jpeg"], draft=False).size == (600, 900)


def test_draft_picks_the_smallest_scale_keeping_the_shortest_side_at_target(tmp_path):
    big = _save(_photo(1600, 1067), tmp_path / "big.jpg", quality=90)
    small = _save(_photo(400, 300), tmp_path / "small.jpg", quality=90)
    assert load_image(big).size == (400, 267)
    assert load_image(big, target=300).size == (800, 534)
    assert load_image(big, draft=False).size == (1600, 1067)
    assert load_image(small).size == (400, 300)


def test_bytes_and_paths_decode_the_same(odd_images):
    path = odd_images["rgb_jpeg"]
    assert np.array_equal(np.asarray(load_image(path.read_bytes())), np.asarray(load_image(path)))
    assert np.array_equal(np.asarray(load_image(str(path))), np.asarray(load_image(path)))


@pytest.mark.parametrize("size", [(900, 600), (600, 900), (224, 224), (225, 1000), (100, 50), (1001, 333)])
def test_preprocess_equals_the_clip_image_processor(size, tiny_clip_dir):
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor.from_pretrained(tiny_clip_dir / "0_CLIPModel")
    image = _photo(*size)
    expected = processor(image, return_tensors="pt")["pixel_values"].numpy()
    config = ClipPreprocessing.from_model_dir(tiny_clip_dir)
    got = preprocess([image], config).numpy()
    assert got.shape == expected.shape == (1, 3, 224, 224)
    assert np.abs(got - expected).max() < 1e-5


def test_preprocess_reads_other_settings_from_the_model_dir(tmp_path):
    (tmp_path / "0_CLIPModel").mkdir()
    (tmp_path / "0_CLIPModel" / "preprocessor_config.json").write_text(
        '{"size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336},'
        ' "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 3}'
    )
    config = ClipPreprocessing.from_model_dir(tmp_path)
    assert config.target == 336
    pixels = preprocess([Image.new("RGB", (500, 400), (255, 255, 255))], config)
    assert pixels.shape == (1, 3, 336, 336)
    assert float(pixels.min()) == pytest.approx(1.0)


# --- broken inputs -------------------------------------------------------------------------------


def test_truncated_jpeg_is_an_image_error_saying_truncated(tmp_path):
    data = io.BytesIO()
    _photo().save(data, format="JPEG", quality=90)
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.path == str(path)
    assert "truncated" in info.value.reason


def test_zero_bytes_is_an_image_error_saying_empty(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(path)
    with pytest.raises(ImageError, match="empty input"):
        load_image(b"")


def test_text_named_jpg_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert info.value.reason == "not an image (unrecognized file format)"


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.jpg")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(30_000, 30_000))  # 900 Mpx claimed: Pillow's own guard fires
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(path)
    path.write_bytes(_png_header_only(10_000, 10_000))  # 100 Mpx: over our default limit only
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert "10000x10000" in info.value.reason and "limit of 89478485 pixels" in info.value.reason


def test_max_pixels_is_configurable(odd_images):
    with pytest.raises(ImageError, match="over the limit of 100000 pixels"):
        load_image(odd_images["rgb_jpeg"], max_pixels=100_000)
    assert load_image(odd_images["rgb_jpeg"], max_pixels=540_000).mode == "RGB"
