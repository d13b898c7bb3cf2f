"""The image embedder interface, the CLIP implementation, and the decode/embed pipeline.

- :class:`ImageEmbedder`: the base class does the batching; a subclass implements one
  ``embed_batch(pixel_values) -> np.ndarray`` (and sets ``dims``). Tests use a fake that counts.
- :class:`ClipImageEmbedder`: any sentence-transformers CLIP model (hub id or local dir). It runs the
  model's own modules on preprocessed tensors, so its vectors equal
  ``SentenceTransformer(model).encode(pil_image)``.
- :func:`embed_paths`: decodes in worker threads ahead of the model (between CPU batches, during
  GPU batches and while the caller sends bulk requests); bounded
  queue, input order kept, one ``(item, vector | ImageError)`` per input item.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from toolkit.concurrency import ordered_map
from toolkit.errors import ImageError, ModelError
from toolkit.images.decode import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_PREPROCESSING,
    ClipPreprocessing,
    load_image,
    prepare,
    to_pixel_values,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image as PILImage

T = TypeVar("T")
logger = logging.getLogger(__name__)

DEFAULT_IMAGE_MODEL = "clip-ViT-B-32"
PRECISIONS = ("fp32", "bf16")


class ImageEmbedder:
    """Base class: batching and preprocessing here, the model call in :meth:`embed_batch`.

    Subclasses set ``dims`` and ``batch_size`` and implement ``embed_batch``; they may replace
    ``preprocessing`` (the CLIP resize/crop/normalize settings) when their model uses others.

    Example:
        >>> vectors = list(embedder.embed([img1, img2, img3]))   # one float32 vector per image
    """

    dims: int = 0
    batch_size: int = 16
    preprocessing: ClipPreprocessing = DEFAULT_PREPROCESSING

    def embed_batch(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Embed a [N, 3, H, W] float32 batch; return a float32 array [N, dims]."""
        raise NotImplementedError

    def prepare(self, image: PILImage.Image) -> np.ndarray:
        """Resize + crop one image to a uint8 array (thread-safe; runs in decode workers)."""
        return prepare(image, self.preprocessing)

    def collate(self, arrays: list[np.ndarray]) -> torch.Tensor:
        """Prepared arrays to the normalized ``pixel_values`` batch."""
        return to_pixel_values(arrays, self.preprocessing)

    def embed(self, images: Iterable[PILImage.Image]) -> Iterator[np.ndarray]:
        """Yield one vector per image, in order, running ``embed_batch`` on ``batch_size`` at a time.

        Example:
            >>> [v.shape for v in embedder.embed([img])]
            [(512,)]
        """
        batch: list[np.ndarray] = []
        for image in images:
            batch.append(self.prepare(image))
            if len(batch) >= self.batch_size:
                yield from self.embed_batch(self.collate(batch))
                batch = []
        if batch:
            yield from self.embed_batch(self.collate(batch))


def default_workers(device: str = "cpu") -> int:
    """Decode threads for :func:`embed_paths`: a heuristic, measured only on 2 cores.

    On CPU decoding pauses while the model runs (see ``pause_decode``), so the decode bursts between
    batches may use every core, up to 4 (draft decoding is a few percent of the work with ViT-B/32).
    On a GPU decoding overlaps inference and is the bottleneck: all cores but one.

    Example:
        >>> embed_paths(paths, embedder, workers=default_workers(embedder.device))
    """
    cores = os.cpu_count() or 1
    if device.startswith("cuda"):
        return max(1, cores - 1)
    return max(1, min(cores, 4))


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available",
                         hint="use --device cpu (or auto)")
    return device


class ClipImageEmbedder(ImageEmbedder):
    """A sentence-transformers CLIP model's image side, batched, on preprocessed tensors.

    Args:
        model: hub id (default ``clip-ViT-B-32``) or a local sentence-transformers model directory.
        device: ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"auto"`` (CUDA when available).
        precision: ``"fp32"`` (default; equals ``encode``) or ``"bf16"`` (autocast; faster on CPUs with
            bf16 instructions and on GPUs; cosine >= 0.999 against fp32).
        batch_size: images per forward pass.
        num_threads: ``torch.set_num_threads`` on CPU; ``None`` keeps torch's choice (all cores).

    Example:
        >>> embedder = ClipImageEmbedder("clip-ViT-B-32")
        >>> embedder.dims
        512
        >>> vector = next(embedder.embed([Image.open("cat.jpg")]))
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_IMAGE_MODEL,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 16,
        num_threads: int | None = None,
    ) -> None:
        import torch

        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}", hint="use --precision fp32 or bf16")
        if batch_size < 1:
            raise ModelError(f"batch size must be at least 1, got {batch_size}", hint="use --batch-size 16")
        self.device = _resolve_device(device)
        self.precision = precision
        self.batch_size = batch_size
        if num_threads and self.device == "cpu":
            torch.set_num_threads(num_threads)
        if precision == "bf16" and self.device == "cpu" and not _cpu_has_fast_bf16():
            # Measured on an AVX2-only CPU: bf16 ran about 4x SLOWER than fp32 (emulated in software).
            logger.warning("precision bf16: this CPU has no native bf16 (AVX512-BF16/AMX); "
                           "it will likely be slower than fp32")
        self.model = _load_sentence_transformer(str(model), self.device)
        first = self.model[0]
        processor = getattr(first, "processor", None)
        image_processor = getattr(processor, "image_processor", processor)
        modalities = getattr(first, "modalities", None)
        if image_processor is None or (modalities is not None and "image" not in modalities):
            raise ModelError(f"{model} is not an image model (no image processor)",
                             hint="use a CLIP model such as clip-ViT-B-32")
        self.preprocessing = ClipPreprocessing.from_image_processor(image_processor)
        # sentence-transformers 5.4+ names it get_embedding_dimension; older ones the longer name.
        dims_fn = getattr(self.model, "get_embedding_dimension", None)
        dims = dims_fn() if dims_fn else self.model.get_sentence_embedding_dimension()
        if not dims:
            config = getattr(first, "config", None)
            dims = getattr(config, "projection_dim", 0)
        self.dims = int(dims)
        self.model_name = str(model)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.precision == "bf16":
            device_type = "cuda" if self.device.startswith("cuda") else "cpu"
            return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed_batch(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Run all of the model's modules on a preprocessed batch; float32 [N, dims] on the CPU."""
        import torch

        if self.device != "cpu":
            pixel_values = pixel_values.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            # The same features dict ``encode`` builds after the processor: every module (CLIP,
            # and a Normalize or Dense if the model has one) runs exactly as in ``encode``.
            features = self.model({"pixel_values": pixel_values, "modality": "image"})
            vectors = features["sentence_embedding"]
        result: np.ndarray = vectors.float().cpu().numpy()
        return result


def _model_uses_all_cores(embedder: ImageEmbedder) -> bool:
    import torch

    device = str(getattr(embedder, "device", "cpu"))
    return device == "cpu" and torch.get_num_threads() >= (os.cpu_count() or 1)


def _cpu_has_fast_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # private API: unknown means "assume yes", no warning
        return True


def _load_sentence_transformer(model: str, device: str) -> Any:
    import warnings

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - install problem
        raise ModelError("sentence-transformers is not installed", hint="pip install toolkit") from exc
    try:
        from transformers.utils import logging as hf_logging

        # transformers logs advice about its "slow" image processor; we never use the processor to
        # run images (toolkit.images.decode does), so the advice is noise on the user's terminal.
        previous = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the legacy CLIPModel module type
                st_model = SentenceTransformer(model, device=device)
        finally:
            hf_logging.set_verbosity(previous)
    except Exception as exc:  # many foreign types (OSError, HF hub, JSON): one message
        raise ModelError(f"cannot load image model {model!r}: {type(exc).__name__}: {exc}",
                         hint="check --image-model (a sentence-transformers CLIP id or directory)") from exc
    return st_model.eval()


def embed_paths(
    items: Iterable[T],
    embedder: ImageEmbedder,
    *,
    workers: int | None = None,
    prefetch: int | None = None,
    source: Callable[[T], bytes | Path | str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: bool = True,
    pause_decode: bool | None = None,
) -> Iterator[tuple[T, np.ndarray | ImageError]]:
    """Decode and embed images, yielding ``(item, vector)`` or ``(item, ImageError)`` in input order.

    Decoding runs in ``workers`` threads ahead of the model (see ``pause_decode``); at most
    ``prefetch`` items are in flight, so memory stays flat whatever the number of items. A broken
    image never stops the run: it comes out as its ``ImageError`` at its place.

    Args:
        items: anything; ``source(item)`` gives the path or bytes (default: the item itself).
        embedder: an :class:`ImageEmbedder`; its ``batch_size`` sets the batches.
        workers: decode threads; ``None``: :func:`default_workers` for the embedder's device.
        prefetch: items decoded ahead (default ``2 * batch_size + workers``), the memory bound.
        source: item -> ``bytes | Path | str``.
        max_pixels: decompression bomb guard per image.
        draft: JPEG draft decoding (see ``toolkit.images.decode``).
        pause_decode: hold the decode threads while the model runs. ``None`` (default): pause when
            the model runs on the CPU with all cores, as torch does by default. Measured on 2 cores:
            decoding (draft) is a small share of the work, and a decode thread running next to
            torch's threads stalls them far more than it costs (the pipeline reached 0.78 of the
            model-only rate overlapped); decoding between batches (and while the caller sends the
            bulk request) gets closer to the ceiling. On a GPU decoding overlaps inference.

    Example:
        >>> for path, result in embed_paths(paths, ClipImageEmbedder()):
        ...     if isinstance(result, ImageError):
        ...         print("failed", path, result.reason)
    """
    import threading

    get_source: Callable[[Any], Any] = source or (lambda item: item)
    if pause_decode is None:
        pause_decode = _model_uses_all_cores(embedder)
    if workers is None:
        workers = default_workers(str(getattr(embedder, "device", "cpu")))
    decoding_allowed = threading.Event()
    decoding_allowed.set()
    batch_size = max(1, embedder.batch_size)
    depth = max(1, prefetch if prefetch is not None else 2 * batch_size + workers)
    target = embedder.preprocessing.target

    def decode(item: T) -> np.ndarray | ImageError:
        decoding_allowed.wait()
        try:
            src = get_source(item)
        except Exception as exc:  # a bad item must not stop the others
            return ImageError(str(item), f"no image source: {type(exc).__name__}: {exc}")
        try:
            image = load_image(src, target=target, max_pixels=max_pixels, draft=draft)
            return embedder.prepare(image)
        except ImageError as exc:
            return exc
        except Exception as exc:  # anything PIL did not say more precisely
            name = f"<{len(src)} bytes>" if isinstance(src, (bytes, bytearray)) else str(src)
            return ImageError(name, f"cannot decode image: {type(exc).__name__}: {exc}")

    # Items wait here, in input order, until their batch is embedded (errors keep their place).
    pending: list[tuple[T, np.ndarray | ImageError]] = []
    ready = 0

    def flush() -> Iterator[tuple[T, np.ndarray | ImageError]]:
        nonlocal pending, ready
        arrays = [result for _, result in pending if not isinstance(result, ImageError)]
        if pause_decode:
            decoding_allowed.clear()
        try:
            vectors = iter(embedder.embed_batch(embedder.collate(arrays))) if arrays else iter(())
        finally:
            decoding_allowed.set()
        done, pending, ready = pending, [], 0
        for item, result in done:
            yield item, result if isinstance(result, ImageError) else next(vectors)

    decoded = ordered_map(decode, items, workers=max(1, workers), depth=depth, thread_name="decode")
    try:
        for item, result in decoded:
            if isinstance(result, BaseException) and not isinstance(result, ImageError):
                # decode returns its own ImageErrors; only a bug in it raises
                result = ImageError(str(item), f"cannot decode image: {type(result).__name__}: {result}")
            pending.append((item, result))
            if not isinstance(result, ImageError):
                ready += 1
            elif ready == 0:
                # Nothing waits for the model before it: out at once, so errors never pile up.
                yield from pending
                pending = []
            if ready >= batch_size:
                yield from flush()
        if pending:
            yield from flush()
    finally:
        # Stopped early (Ctrl-C, consumer broke out): release paused decoders, drop the rest.
        decoding_allowed.set()
        decoded.close()
