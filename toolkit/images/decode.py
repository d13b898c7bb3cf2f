"""Decoding images fast, and CLIP preprocessing that gives the reference pixels.

The reference path is ``SentenceTransformer(model).encode(ImageOps.exif_transpose(Image.open(p)))``:
the full-size image is decoded, rotated by its EXIF orientation, converted with
``image.convert("RGB")`` (transformers' ``convert_to_rgb``; whatever the mode: L, LA, P with
transparency, CMYK, I;16, I, F, RGBA, 1), resized with its shortest edge to 224 (PIL bicubic), center
cropped to 224x224, rescaled by 1/255 and normalized with the CLIP mean/std.

The fast path does the same steps with three differences that cost nothing in quality:
- JPEG draft mode: libjpeg decodes at 1/2, 1/4 or 1/8 scale straight from the DCT coefficients
  (far less work than a full decode), at the smallest scale whose shortest side stays at least
  ``DRAFT_MARGIN * target``. The bicubic resize then starts from that smaller image.
- the per-image part (decode, rotate, convert, resize, crop) returns a uint8 array and runs in worker
  threads (PIL releases the GIL while decoding and resizing);
- rescale + normalize happen once per batch, as one fused multiply-add on a uint8 tensor.

Why ``DRAFT_MARGIN = 1`` (shortest side >= target, the smallest scale): libjpeg's scaled IDCT is a
proper low-pass, so the drafted image is a clean downscale and the bicubic resize finishes from there.
Measured on scikit-image photos saved as 1600-px JPEGs (q90): the normalized pixel_values against the
reference processor have a cosine of 0.9993-0.99999 with margin 1 and 0.9995-1.0 with margin 2; the
embeddings' cosine is >= 0.99999 with both the tiny test model and the random-weight ViT-B/32. One
thread decodes + resizes 1600x1067 photos at about 120/s with margin 1, 80/s with margin 2 and 30/s
at full size. Without draft (``draft=False``) the pixels equal the reference's (max 2.4e-7).

What is refused, with a reason (an :class:`~toolkit.errors.ImageError`), before any pixel is allocated:
more than ``max_pixels`` pixels in the file, or once resized (a 20000x1 strip resized to a 224-px short
side would be 4,480,000x224 = 1e9 pixels); an aspect ratio over :data:`MAX_ASPECT_RATIO`; a path that
is not a regular file (FIFO, device, socket: checked before opening, opened non-blocking) or over
``max_bytes``. A format Pillow cannot read is named from its magic bytes (HEIC, AVIF, JPEG XL, SVG, PDF,
camera raw, video, HTML, ...) with the fix; a plugin for it (pillow-heif, pillow-avif-plugin,
pillow-jxl-plugin) is used when installed. Names in reasons are :func:`~toolkit.images.sources.printable`.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from toolkit.errors import ImageError
from toolkit.images.sources import MAX_FILE_BYTES, LocalFileRefused, open_local_file, printable

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image as PILImage

#: Pillow's own default limit (``Image.MAX_IMAGE_PIXELS``): about 9459 x 9459 pixels.
DEFAULT_MAX_PIXELS = 89_478_485
#: The drafted image's shortest side is kept at least this many times the resize target.
DRAFT_MARGIN = 1
#: Longest side / shortest side beyond which an image is refused: the model's center crop would see
#: a sliver of it (1/100 at this limit), and resizing its short side up makes a huge image.
MAX_ASPECT_RATIO = 100
#: A ``target`` at or above this means "no resize" (``ClipPreprocessing.target`` without resize).
_NO_RESIZE = 1 << 30
_EXIF_ORIENTATION = 0x0112

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _describe(source: bytes | Path | str) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return printable(str(source))


# --------------------------------------------------------------------------- formats Pillow cannot read

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1",
                b"heif", b"mif2"}
_VIDEO_BRANDS = {b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"M4VP",
                 b"qt  ", b"3gp4", b"3gp5", b"3gp6", b"3g2a", b"dash", b"MSNV", b"f4v "}
_CONVERT = "convert it to JPEG or PNG"
_HEIF = ("a HEIC/HEIF image (the iPhone photo format), which Pillow reads only with a plugin: "
         f"pip install pillow-heif (used automatically once installed), or {_CONVERT}")
_AVIF = ("an AVIF image, which this Pillow cannot read: pip install -U pillow (11.3+ reads AVIF) or "
         f"pip install pillow-avif-plugin (used automatically once installed), or {_CONVERT}")
_JXL = ("a JPEG XL image, which Pillow reads only with a plugin: pip install pillow-jxl-plugin (used "
        f"automatically once installed), or {_CONVERT}")
_WEBP = "a WebP image, which this Pillow cannot read (built without libwebp): " + _CONVERT
_JP2 = "a JPEG 2000 image, which this Pillow cannot read (built without OpenJPEG): " + _CONVERT
_RAW = "a camera raw file ({}), not a finished image: export it as JPEG or TIFF from your raw converter"
_VIDEO = "a video ({}), not an image: extract a frame (e.g. ffmpeg -i VIDEO -frames:v 1 frame.jpg)"
# Plugins that add a format to Pillow when imported: (module, function to call or None).
_PLUGINS: dict[str, tuple[str, str | None]] = {
    _HEIF: ("pillow_heif", "register_heif_opener"), _AVIF: ("pillow_avif", None), _JXL: ("pillow_jxl", None)}
# Formats this Pillow may read itself (built with the library): then the file is damaged, not unknown.
_FEATURES = {_AVIF: ("avif", "AVIF"), _WEBP: ("webp", "WebP"), _JP2: ("jpg_2000", "JPEG 2000")}
_plugins_tried: dict[str, bool] = {}
_plugins_lock = threading.Lock()


def sniff_format(head: bytes) -> str | None:
    """What a file Pillow did not recognize is, from its first bytes, and the fix; None if unknown.

    Example:
        >>> sniff_format(b"\\x00\\x00\\x00\\x18ftypheic")[:22]
        'a HEIC/HEIF image (the'
    """
    if not head:
        return None
    if head[4:8] == b"ftyp":  # ISO base media: HEIF, AVIF, CR3, MP4, QuickTime
        size = int.from_bytes(head[:4], "big")
        brands = {head[8:12]} | {head[i:i + 4] for i in range(16, min(max(size, 16), len(head), 64), 4)}
        if b"avif" in brands or b"avis" in brands:
            return _AVIF
        if brands & _HEIF_BRANDS:
            return _HEIF
        if b"crx " in brands:
            return _RAW.format("Canon CR3")
        if brands & _VIDEO_BRANDS:
            return _VIDEO.format("MP4/QuickTime")
        return f"an ISO media file (brand {head[8:12].decode('latin-1')!r}), not an image Pillow reads: {_CONVERT}"
    signatures: tuple[tuple[bytes, str], ...] = (
        (b"\xff\x0a", _JXL), (b"\x00\x00\x00\x0cJXL \r\n\x87\n", _JXL),
        (b"%PDF", "a PDF document, not an image: export the page as PNG (e.g. pdftoppm -png -r 150 FILE page)"),
        (b"%!PS", "a PostScript/EPS file: Pillow needs Ghostscript for it; install Ghostscript or " + _CONVERT),
        (b"8BPS\x00\x02", "a Photoshop large document (PSB), which Pillow cannot read: save it as PSD, TIFF or PNG"),
        (b"8BPS", "a Photoshop file (PSD) Pillow cannot read (a layout it does not know): " + _CONVERT),
        (b"II+\x00", "a BigTIFF file, which Pillow cannot read: save it as a plain TIFF, or " + _CONVERT),
        (b"MM\x00+", "a BigTIFF file, which Pillow cannot read: save it as a plain TIFF, or " + _CONVERT),
        (b"IIRO", _RAW.format("Olympus ORF")), (b"IIRS", _RAW.format("Olympus ORF")),
        (b"MMOR", _RAW.format("Olympus ORF")), (b"IIU\x00", _RAW.format("Panasonic RW2")),
        (b"FUJIFILMCCD-RAW", _RAW.format("Fujifilm RAF")),
        (b"II*\x00", "a TIFF variant Pillow cannot read (a camera raw file, or an unusual compression): "
                     + _CONVERT),
        (b"MM\x00*", "a TIFF variant Pillow cannot read (a camera raw file, or an unusual compression): "
                     + _CONVERT),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", _JP2), (b"\xffO\xffQ", _JP2),
        (b"\x1aE\xdf\xa3", _VIDEO.format("Matroska/WebM")),
        (b"v/1\x01", "an OpenEXR (HDR) image, which Pillow cannot read: " + _CONVERT),
        (b"#?RADIANCE", "a Radiance HDR image, which Pillow cannot read: " + _CONVERT),
        (b"#?RGBE", "a Radiance HDR image, which Pillow cannot read: " + _CONVERT),
        (b"PK\x03\x04", "a ZIP archive (or a document stored as one), not an image: unzip it first"),
        (b"\x1f\x8b", "gzip-compressed data, not an image: decompress it first (an .svgz is a "
                      "compressed SVG: rasterize it)"),
        (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive, not an image: extract it first"),
        (b"Rar!\x1a\x07", "a RAR archive, not an image: extract it first"),
        (b"AT&TFORM", "a DjVu document, which Pillow cannot read: " + _CONVERT),
        (b"BPG\xfb", "a BPG image, which Pillow cannot read: " + _CONVERT),
        (b"FLIF", "a FLIF image, which Pillow cannot read: " + _CONVERT),
        (b"ID3", "an audio file (MP3), not an image"), (b"fLaC", "an audio file (FLAC), not an image"),
        (b"OggS", "an Ogg audio/video file, not an image"),
    )
    for magic, reason in signatures:
        if head.startswith(magic):
            return reason
    if head[:4] == b"RIFF":
        if head[8:12] == b"WEBP":
            return _WEBP
        if head[8:12] == b"AVI ":
            return _VIDEO.format("AVI")
    if head[128:132] == b"DICM":
        return "a DICOM medical image, which Pillow cannot read: convert it (e.g. with pydicom or dcm2jpg)"
    if not head.strip(b"\x00"):
        return "only zero bytes, no image data (an incomplete download or copy?)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"version https://git-lfs"):
        return ("a Git LFS pointer, not the image itself: run `git lfs pull` in its repository to fetch "
                "the real file")
    if text.startswith(b"<svg") or text.startswith(b"<!doctype svg") or (text.startswith(b"<?xml")
                                                                      and b"<svg" in text):
        return ("an SVG file (vector graphics), which is not read as a raster image: rasterize it to PNG "
                "(e.g. rsvg-convert -w 1024 FILE -o out.png) and ingest that")
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page, not an image (often an error page saved in place of the image)"
    return None


def _plugin_added(reason: str) -> bool:
    """Import the Pillow plugin for the format ``reason`` names, once; True if it is now registered."""
    plugin = _PLUGINS.get(reason)
    if plugin is None:
        return False
    with _plugins_lock:
        if reason not in _plugins_tried:
            module, function = plugin
            try:
                loaded = importlib.import_module(module)
                if function:
                    getattr(loaded, function)()
                _plugins_tried[reason] = True
            except Exception:  # not installed, or broken: the reason names the fix
                _plugins_tried[reason] = False
            return _plugins_tried[reason]
        return False  # tried before: this file failed again, so the plugin did not help


def _damaged(reason: str | None) -> str | None:
    """For a format this Pillow reads itself: the file is damaged or an unsupported variant."""
    feature = _FEATURES.get(reason or "")
    if feature is None:
        return None
    from PIL import features

    try:
        available = bool(features.check(feature[0]))
    except Exception:
        available = False
    if not available:
        return None
    return (f"a damaged {feature[1]} image, or a variant Pillow does not read (Pillow reads {feature[1]}, "
            f"but not this file): {_CONVERT}")


def _head(fp: Any) -> bytes:
    try:
        fp.seek(0)
        head: bytes = fp.read(4096)
        fp.seek(0)
        return head
    except Exception:
        return b""


def _open(source: bytes | Path | str, name: str, max_bytes: int | None) -> tuple[Any, IO[bytes] | None]:
    """``(PIL image, file to close or None)``; every failure an ImageError with a reason."""
    from PIL import Image, UnidentifiedImageError

    fh: IO[bytes] | None = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(name, "empty input (0 bytes)")
        fp: Any = io.BytesIO(bytes(source))
    else:
        try:
            fh = open_local_file(source, max_bytes=max_bytes)
            empty = os.fstat(fh.fileno()).st_size == 0
        except FileNotFoundError as exc:
            raise ImageError(name, "file not found") from exc
        except PermissionError as exc:
            raise ImageError(name, "permission denied") from exc
        except LocalFileRefused as exc:
            raise ImageError(name, exc.reason) from exc
        except OSError as exc:
            raise ImageError(name, f"cannot read file: {exc.strerror or exc}") from exc
        if empty:
            fh.close()
            raise ImageError(name, "empty file (0 bytes)")
        fp = fh
    try:
        for attempt in (1, 2):
            try:
                with warnings.catch_warnings():
                    # We apply our own pixel limit below; Pillow's warning would only be noise. So is
                    # its UserWarning on a corrupt EXIF block (the image itself is fine).
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    warnings.simplefilter("ignore", UserWarning)
                    return Image.open(fp), fh
            except UnidentifiedImageError as exc:
                known = sniff_format(_head(fp))
                if known is not None and attempt == 1 and _plugin_added(known):
                    continue  # the plugin for this format was installed: try again with it
                raise ImageError(name, _damaged(known) or known or "not an image (unrecognized file format)") from exc
        raise AssertionError("unreachable")
    except Image.DecompressionBombError as exc:
        _close(fh)
        raise ImageError(name, f"decompression bomb refused by Pillow: {exc}") from exc
    except ImageError:
        _close(fh)
        raise
    except LocalFileRefused as exc:  # the file grew past max_bytes while Pillow read its header
        _close(fh)
        raise ImageError(name, exc.reason) from exc
    except Exception as exc:  # Pillow raises many types on hostile headers (struct.error, KeyError...)
        _close(fh)
        raise ImageError(name, f"cannot open image: {type(exc).__name__}: {exc}") from exc


def _close(fh: IO[bytes] | None) -> None:
    if fh is not None:
        fh.close()


def check_size(width: int, height: int, *, name: str, target: int = 224, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_aspect_ratio: float | None = MAX_ASPECT_RATIO) -> None:
    """Refuse an image by its header size alone, before any pixel is decoded or resized.

    Refused: no pixels; more than ``max_pixels`` pixels; longest/shortest side over
    ``max_aspect_ratio``; more than ``max_pixels`` once the shortest side is resized to ``target``
    (what the CLIP resize does: a 20000x1 strip would become 4,480,000x224).

    Raises:
        ImageError: with the sizes and the limit in the reason.

    Example:
        >>> check_size(20000, 1, name="strip.png")
        Traceback (most recent call last):
        toolkit.errors.ImageError: strip.png: extreme aspect ratio: 20000x1 is 20000:1, ...
    """
    if width < 1 or height < 1:
        raise ImageError(name, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            name,
            f"image too large: {width}x{height} = {width * height} pixels is over the limit of "
            f"{max_pixels} pixels (decompression bomb guard, max_pixels)",
        )
    short, long = min(width, height), max(width, height)
    if max_aspect_ratio is not None and long > short * max_aspect_ratio:
        ratio = long / short
        raise ImageError(
            name,
            f"extreme aspect ratio: {width}x{height} is {ratio:.0f}:1, over the limit of "
            f"{max_aspect_ratio:g}:1 (the model would see {100 / ratio:.2g}% of it in its center crop, and "
            "resizing it would take a great deal of memory): crop it into parts",
        )
    if target < _NO_RESIZE:
        new_long = int(target * long / short)
        if target * new_long > max_pixels:
            resized = f"{target}x{new_long}" if width <= height else f"{new_long}x{target}"
            raise ImageError(
                name,
                f"image too large once resized: {width}x{height} resized to a shortest side of {target} "
                f"would be {resized} = {target * new_long} pixels, over the limit of {max_pixels} pixels "
                "(max_pixels)",
            )


def _draft_scale(width: int, height: int, needed: int) -> int:
    """The largest JPEG scale denominator (8, 4, 2 or 1) keeping the shortest side >= ``needed``."""
    shortest = min(width, height)
    for scale in (8, 4, 2):
        if shortest // scale >= needed:
            return scale
    return 1


def to_rgb(image: PILImage.Image) -> PILImage.Image:
    """Convert any Pillow mode to RGB exactly as transformers' CLIP processor does (``convert("RGB")``).

    That means: alpha (LA, RGBA, PA, P with transparency) is dropped, not composited on white; CMYK
    uses Pillow's plain conversion; 16-bit and 32-bit (I;16, I, F) values are clipped to 0..255 like
    Pillow does. Old Pillow versions refuse some I;16 variants: we clip the same way by hand then.

    Example:
        >>> to_rgb(Image.open("scan.png")).mode
        'RGB'
    """
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError:
        import numpy as np
        from PIL import Image

        # Pillow < 10 has no I;16B -> RGB conversion; clipping matches what newer Pillow does.
        values = np.asarray(image).astype(np.float64)
        gray = np.clip(values, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")


def load_image(
    source: bytes | Path | str,
    *,
    target: int = 224,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: bool = True,
    max_aspect_ratio: float | None = MAX_ASPECT_RATIO,
    max_bytes: int | None = MAX_FILE_BYTES,
) -> PILImage.Image:
    """Decode one image to RGB, oriented by EXIF, as small as the CLIP resize to ``target`` allows.

    Args:
        source: a file path, or the encoded bytes (e.g. a download).
        target: the shortest edge the model's resize goes to (224 for ViT-B/32). With ``draft``,
            JPEGs decode at the smallest 1/2, 1/4, 1/8 scale whose shortest side stays >= target.
        max_pixels: refuse images with more pixels than this, in the file or once resized to
            ``target`` (decompression bomb guard), before any pixel is decoded.
        draft: use JPEG draft decoding. ``False`` decodes at full size like the reference.
        max_aspect_ratio: refuse images whose longest side is more than this times the shortest
            (``None``: no limit; the resized-pixels check still applies).
        max_bytes: refuse local files larger than this (also one that grows past it while read).

    Returns: an RGB ``PIL.Image.Image`` (the first frame of an animation).

    Raises:
        ImageError: with ``path`` (printable) and a precise ``reason``: empty, missing, not a regular
            file, not an image (or a format named, with the fix), over a size limit, truncated or
            corrupt data.

    Example:
        >>> load_image(Path("photo.jpg")).size      # a 1600x1067 JPEG, drafted at 1/4
        (400, 267)
    """
    from PIL import Image, ImageOps

    name = _describe(source)
    image, fh = _open(source, name, max_bytes)
    try:
        width, height = image.size
        check_size(width, height, name=name, target=target, max_pixels=max_pixels,
                   max_aspect_ratio=max_aspect_ratio)
        if draft and image.format in ("JPEG", "MPO"):  # MPO: the multi-picture JPEG of many cameras
            scale = _draft_scale(width, height, target * DRAFT_MARGIN)
            if scale > 1:
                # Requesting (W//s, H//s) makes Pillow pick exactly scale s (see _draft_scale).
                image.draft("RGB", (width // scale, height // scale))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
        except Image.DecompressionBombError as exc:
            raise ImageError(name, f"decompression bomb refused by Pillow: {exc}") from exc
        except LocalFileRefused as exc:
            raise ImageError(name, exc.reason) from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise ImageError(name, _load_reason(image, exc)) from exc

        with warnings.catch_warnings():
            # "Corrupt EXIF data" is Pillow's UserWarning on stderr, once per broken file: noise in a run.
            warnings.simplefilter("ignore", UserWarning)
            try:
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            except Exception:  # a broken EXIF block must not lose the image; the reference ignores it too
                orientation = 1
            if orientation in (2, 3, 4, 5, 6, 7, 8):
                # After draft the size changed but the orientation tag did not: transposing the small
                # image is the same as transposing the big one and then drafting.
                image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageError:
        raise
    except MemoryError as exc:
        raise ImageError(name, "out of memory while decoding (lower max_pixels or decode_workers)") from exc
    except Exception as exc:  # Pillow raises many types on hostile data: never a traceback
        raise ImageError(name, f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    finally:
        # The pixels are in memory now (or the image failed): the file is not needed any more.
        _close(fh)


def _load_reason(image: Any, exc: BaseException) -> str:
    text = str(exc)
    if "truncated" in text:
        return f"truncated image data ({text})"
    if "Ghostscript" in text:
        return f"a PostScript/EPS image: Pillow needs Ghostscript to read it ({text}); install it, or {_CONVERT}"
    if "not available" in text or "unknown compression" in text.lower():
        return (f"cannot decode this {image.format or 'image'}: {text} (Pillow lacks the decoder for "
                f"its compression): {_CONVERT}")
    return f"corrupt image data: {type(exc).__name__}: {text}"


@dataclass(frozen=True)
class ClipPreprocessing:
    """The CLIP image processor's settings, read from a model's ``preprocessor_config.json``."""

    shortest_edge: int | None = 224
    resize_hw: tuple[int, int] | None = None
    crop_hw: tuple[int, int] | None = (224, 224)
    resample: int = 3  # PIL.Image.Resampling.BICUBIC
    rescale_factor: float = 1 / 255
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    do_resize: bool = True
    do_rescale: bool = True
    do_normalize: bool = True

    @property
    def target(self) -> int:
        """The smallest side any decode must keep for the resize (for draft decoding)."""
        if self.do_resize and self.shortest_edge:
            return self.shortest_edge
        if self.do_resize and self.resize_hw:
            return max(self.resize_hw)
        return 1 << 30  # no resize: never draft

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClipPreprocessing:
        """Build from an image processor's config dict (``preprocessor_config.json`` content)."""
        size = config.get("size", {"shortest_edge": 224})
        if isinstance(size, int):
            size = {"shortest_edge": size}
        crop = config.get("crop_size", {"height": 224, "width": 224})
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        return cls(
            shortest_edge=size.get("shortest_edge"),
            resize_hw=(size["height"], size["width"]) if "height" in size else None,
            crop_hw=(crop["height"], crop["width"]) if config.get("do_center_crop", True) else None,
            resample=int(config.get("resample", 3)),
            rescale_factor=float(config.get("rescale_factor", 1 / 255)),
            mean=tuple(config.get("image_mean", OPENAI_CLIP_MEAN)),
            std=tuple(config.get("image_std", OPENAI_CLIP_STD)),
            do_resize=bool(config.get("do_resize", True)),
            do_rescale=bool(config.get("do_rescale", True)),
            do_normalize=bool(config.get("do_normalize", True)),
        )

    @classmethod
    def from_image_processor(cls, processor: Any) -> ClipPreprocessing:
        """Build from a loaded transformers image processor (slow or fast)."""
        config = {
            key: getattr(processor, key)
            for key in ("size", "crop_size", "resample", "rescale_factor", "image_mean", "image_std",
                        "do_resize", "do_rescale", "do_normalize", "do_center_crop")
            if getattr(processor, key, None) is not None
        }
        for key in ("size", "crop_size"):
            if key in config and not isinstance(config[key], (int, dict)):
                config[key] = {k: v for k, v in dict(config[key]).items() if v is not None}
        return cls.from_config(config)

    @classmethod
    def from_model_dir(cls, model_dir: str | Path) -> ClipPreprocessing:
        """Read ``preprocessor_config.json`` from a sentence-transformers or transformers CLIP dir."""
        root = Path(model_dir)
        candidates = [root / "preprocessor_config.json", *sorted(root.glob("*/preprocessor_config.json"))]
        for candidate in candidates:
            if candidate.is_file():
                return cls.from_config(json.loads(candidate.read_text()))
        return cls()

    def resize_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize, computed like transformers' ``get_resize_output_image_size``."""
        if self.resize_hw is not None and not self.shortest_edge:
            return self.resize_hw[1], self.resize_hw[0]
        assert self.shortest_edge is not None
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)


DEFAULT_PREPROCESSING = ClipPreprocessing()


def prepare(image: PILImage.Image, config: ClipPreprocessing = DEFAULT_PREPROCESSING) -> np.ndarray:
    """Resize and center-crop one RGB image; return it as a uint8 HxWx3 array (thread-safe).

    Same pixels as the CLIP image processor before its rescale/normalize step.

    Example:
        >>> prepare(load_image("photo.jpg")).shape
        (224, 224, 3)
    """
    import numpy as np

    image = to_rgb(image)
    if config.do_resize:
        size = config.resize_size(*image.size)
        if size[0] * size[1] > DEFAULT_MAX_PIXELS:  # load_image refuses these; an image made elsewhere
            raise ImageError("<image>", f"image too large once resized: {image.width}x{image.height} would be "
                                        f"{size[0]}x{size[1]}, over {DEFAULT_MAX_PIXELS} pixels")
        if size != image.size:
            image = image.resize(size, resample=config.resample)
    array = np.asarray(image)
    if config.crop_hw is None:
        return array
    crop_h, crop_w = config.crop_hw
    height, width = array.shape[:2]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    if top >= 0 and left >= 0:
        return array[top:top + crop_h, left:left + crop_w]
    # Smaller than the crop: pad with zeros where it is short, like transformers' center_crop.
    new_h, new_w = max(crop_h, height), max(crop_w, width)
    padded = np.zeros((new_h, new_w, 3), dtype=np.uint8)
    top_pad, left_pad = math.ceil((new_h - height) / 2), math.ceil((new_w - width) / 2)
    padded[top_pad:top_pad + height, left_pad:left_pad + width] = array
    top, left = top + top_pad, left + left_pad
    return padded[max(0, top):min(new_h, top + crop_h), max(0, left):min(new_w, left + crop_w)]


def to_pixel_values(
    arrays: list[np.ndarray], config: ClipPreprocessing = DEFAULT_PREPROCESSING
) -> torch.Tensor:
    """Stack prepared uint8 arrays into a normalized float32 tensor [N, 3, H, W].

    One fused ``x * (scale / std) - mean / std`` over the batch: the same values as rescale then
    normalize (up to float rounding).

    Example:
        >>> to_pixel_values([prepare(img)]).shape
        torch.Size([1, 3, 224, 224])
    """
    import numpy as np
    import torch

    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(torch.float32)
    scale = config.rescale_factor if config.do_rescale else 1.0
    if config.do_normalize:
        std = torch.tensor(config.std, dtype=torch.float32).view(1, -1, 1, 1)
        mean = torch.tensor(config.mean, dtype=torch.float32).view(1, -1, 1, 1)
        return (batch * (scale / std) - mean / std).contiguous()
    return (batch * scale).contiguous()


def preprocess(
    images: list[PILImage.Image], config: ClipPreprocessing = DEFAULT_PREPROCESSING
) -> torch.Tensor:
    """CLIP preprocessing of PIL images to ``pixel_values`` [N, 3, 224, 224] (float32).

    Equal to ``CLIPImageProcessor(images, return_tensors="pt").pixel_values`` for the same settings
    (cosine >= 0.9999 per image; in practice equal up to float rounding), but faster: PIL resize on
    the (drafted) image, numpy crop, one fused normalize per batch.

    Example:
        >>> preprocess([load_image("a.jpg"), load_image("b.png")]).shape
        torch.Size([2, 3, 224, 224])
    """
    return to_pixel_values([prepare(image, config) for image in images], config)
