"""The image embedder interface, the CLIP implementation, and the decode/embed pipeline.

- :class:`ImageEmbedder`: the base class does the batching; a subclass implements one
  ``embed_batch(pixel_values) -> np.ndarray`` (and sets ``dims``). Tests use a fake that counts.
- :class:`ClipImageEmbedder`: any sentence-transformers CLIP model (hub id or local dir). It runs the
  model's own modules on preprocessed tensors, so its vectors equal
  ``SentenceTransformer(model).encode(pil_image)``.
- Precision (:func:`precision_candidates`, :func:`choose_precision`, :class:`PrecisionChoice`):
  ``auto`` times the precisions this machine can run on the first real batch and keeps the fastest
  whose vectors agree with fp32 (min cosine over the batch) above a threshold; an explicit reduced
  precision is checked the same way (the parity guard) and falls back to fp32, or stops with
  ``strict``. The CUDA autocast path (fp16/bf16) is untested on a GPU.
- :func:`embed_paths`: decodes in worker threads ahead of the model (between CPU batches, during
  GPU batches and while the caller sends bulk requests); bounded
  queue, input order kept, one ``(item, vector | ImageError)`` per input item.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from toolkit.concurrency import ordered_map
from toolkit.errors import ImageError, ModelError, ParityError
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
PRECISIONS = ("auto", "int8", "bf16", "fp16", "fp32")
#: Precisions below fp32: each is checked against fp32 on the first batch (the parity guard).
REDUCED_PRECISIONS = ("int8", "bf16", "fp16")
#: Default guard thresholds: the lowest cosine to the fp32 vector any image of the first batch may have.
DEFAULT_MIN_COSINE: dict[str, float] = {"bf16": 0.999, "fp16": 0.999, "int8": 0.995}
#: ``auto`` keeps fp32 unless a candidate is at least this much faster on the first batch (timing noise).
AUTO_MIN_SPEEDUP = 1.1


@dataclass
class PrecisionChoice:
    """What ran and why: the decision taken on the first batch (summary, ``--json``, progress line).

    ``measured``: per precision tried, ``{"images_per_second": float | None, "min_cosine": float | None}``
    (``min_cosine`` against fp32 over the first batch; rates only where ``auto`` timed them).
    """

    requested: str
    used: str
    device: str
    thresholds: dict[str, float]
    measured: dict[str, dict[str, float | None]] = field(default_factory=dict)
    fell_back: bool = False
    reason: str = ""
    batch: int = 0

    @property
    def min_cosine(self) -> float | None:
        """The used precision's measured agreement with fp32 (None for fp32 itself)."""
        return self.measured.get(self.used, {}).get("min_cosine")

    def as_json(self) -> dict[str, Any]:
        return {"requested": self.requested, "used": self.used, "device": self.device,
                "fell_back": self.fell_back, "reason": self.reason, "min_cosine": self.min_cosine,
                "thresholds": dict(self.thresholds), "first_batch": self.batch,
                "measured": {k: dict(v) for k, v in self.measured.items()}}

    def describe(self) -> str:
        """One line, e.g. ``precision int8 (auto; min cosine 0.9987 vs fp32, 2.9x fp32)``."""
        if self.fell_back:
            return f"precision fp32 (fell back from {self.requested}: {self.reason})"
        if self.used == "fp32":
            why = f"; {self.reason}" if self.reason and self.requested == "auto" else ""
            return f"precision fp32 ({self.requested}{why})"
        parts = [self.requested]
        if self.min_cosine is not None:
            parts.append(f"min cosine {self.min_cosine:.4f} vs fp32")
        rate, base = (self.measured.get(p, {}).get("images_per_second") for p in (self.used, "fp32"))
        if rate and base:
            parts.append(f"{rate / base:.1f}x fp32")
        return f"precision {self.used} ({'; '.join(parts)})"


def precision_candidates(device: str, *, cpu_bf16: bool, cuda_bf16: bool, int8_engine: bool) -> list[str]:
    """The reduced precisions ``auto`` tries on ``device`` (fp32 is always the fallback).

    CPU: int8 (dynamic quantization of the Linear layers) when torch has a quantized engine; bf16
    only with native bf16 (AVX512-BF16/AMX): emulated bf16 ran 0.13x fp32 on an AVX2-only CPU.
    CUDA: fp16 autocast, and bf16 where the GPU supports it. int8 has no CUDA kernels here.

    Example:
        >>> precision_candidates("cpu", cpu_bf16=False, cuda_bf16=False, int8_engine=True)
        ['int8']
    """
    if device.startswith("cuda"):
        return ["fp16"] + (["bf16"] if cuda_bf16 else [])
    return (["int8"] if int8_engine else []) + (["bf16"] if cpu_bf16 else [])


def choose_precision(
    requested: str,
    measured: Mapping[str, Mapping[str, float | None]],
    thresholds: Mapping[str, float],
    *,
    min_speedup: float = AUTO_MIN_SPEEDUP,
) -> tuple[str, bool, str]:
    """``(used, fell_back, reason)`` from the first batch's measurements (pure: tested with fakes).

    ``auto``: the fastest precision whose min cosine passes its threshold and that beats fp32 by
    ``min_speedup``; otherwise fp32 (not a fallback: fp32 is a valid answer). An explicit reduced
    precision: kept when it passes, else fp32 with ``fell_back`` true.

    Example:
        >>> choose_precision("auto", {"fp32": {"images_per_second": 10.0},
        ...     "int8": {"images_per_second": 30.0, "min_cosine": 0.998}}, {"int8": 0.995})
        ('int8', False, 'fastest passing the guard (int8 3.0x fp32)')
    """
    def passes(p: str) -> bool:
        cos = measured.get(p, {}).get("min_cosine")
        return cos is not None and cos == cos and cos >= thresholds.get(p, 1.0)  # NaN never passes

    def failed(p: str) -> str:
        cos = measured.get(p, {}).get("min_cosine")
        shown = "nan" if cos is None or cos != cos else f"{cos:.4f}"
        return f"{p} min cosine {shown} < {thresholds.get(p, 1.0)} on the first batch"

    if requested == "fp32":
        return "fp32", False, ""
    if requested != "auto":
        return (requested, False, "") if passes(requested) else ("fp32", True, failed(requested))
    base = measured.get("fp32", {}).get("images_per_second") or 0.0
    best, best_rate, notes = "fp32", base, []
    for p in (p for p in measured if p != "fp32"):
        rate = measured[p].get("images_per_second") or 0.0
        if not passes(p):
            notes.append(failed(p))
        elif rate < base * min_speedup:
            notes.append(f"{p} not faster ({rate / base if base else 0:.2f}x fp32)")
        elif rate > best_rate:
            best, best_rate = p, rate
    if best == "fp32":
        return "fp32", False, "; ".join(notes) or "no reduced precision to try on this device"
    return best, False, f"fastest passing the guard ({best} {best_rate / base:.1f}x fp32)"


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest row-wise cosine between two [N, dims] arrays (NaN when a row is NaN or zero)."""
    import numpy as np

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (a64 * b64).sum(axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return float("nan") if np.isnan(cos).any() else float(cos.min())


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
        precision: ``"auto"`` (default: on the first batch, the fastest precision this machine runs
            whose vectors agree with fp32 above ``min_cosine``), ``"int8"`` (CPU: dynamic quantization of
            the Linear layers; LayerNorm and the patch embedding stay fp32), ``"bf16"`` (autocast; CPUs
            with native bf16, GPUs), ``"fp16"`` (CUDA autocast) or ``"fp32"`` (equals ``encode``). A
            reduced precision is checked against fp32 on the first batch and falls back to fp32 when
            it disagrees (``choice`` says so).
        strict: with an explicit reduced precision, raise :class:`ParityError` instead of falling back.
        min_cosine: guard thresholds per reduced precision (default :data:`DEFAULT_MIN_COSINE`).
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
        precision: str = "auto",
        strict: bool = False,
        min_cosine: Mapping[str, float] | None = None,
        batch_size: int = 16,
        num_threads: int | None = None,
    ) -> None:
        import torch

        if precision not in PRECISIONS:
            raise ModelError(f"unknown precision {precision!r}", hint=f"use --precision {' | '.join(PRECISIONS)}")
        if batch_size < 1:
            raise ModelError(f"batch size must be at least 1, got {batch_size}", hint="use --batch-size 16")
        if strict and precision not in REDUCED_PRECISIONS:
            raise ModelError(f"--strict applies to an explicit reduced precision, not {precision!r}",
                             hint="use --precision int8|bf16|fp16 with --strict, or drop --strict")
        self.device = _resolve_device(device)
        cuda = self.device.startswith("cuda")
        if precision == "fp16" and not cuda:
            raise ModelError("precision fp16 needs a CUDA GPU (fp16 on a CPU is emulated and slow)",
                             hint="use --precision auto, int8 or bf16 on a CPU")
        if precision == "int8" and cuda:
            raise ModelError("precision int8 runs on the CPU only (dynamic quantization has no CUDA kernels)",
                             hint="use --precision auto, fp16 or bf16 on a GPU, or --device cpu")
        self.precision = precision
        self.strict = strict
        self.thresholds = {**DEFAULT_MIN_COSINE, **dict(min_cosine or {})}
        self.choice: PrecisionChoice | None = None
        #: Called once with the :class:`PrecisionChoice` when the first batch has decided it.
        self.on_choice: Callable[[PrecisionChoice], None] | None = None
        self._active = "fp32"
        self._int8_model: Any = None
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

    def _autocast(self, precision: str) -> contextlib.AbstractContextManager[Any]:
        import torch

        if precision in ("bf16", "fp16"):
            # CUDA autocast (fp16/bf16) is untested on a GPU: no GPU was at hand when it was written.
            device_type = "cuda" if self.device.startswith("cuda") else "cpu"
            dtype = torch.bfloat16 if precision == "bf16" else torch.float16
            return torch.autocast(device_type=device_type, dtype=dtype)
        return contextlib.nullcontext()

    def _int8(self) -> Any:
        """The model with its Linear layers dynamically quantized to int8 (LayerNorm, the patch
        embedding convolution and the position embeddings stay fp32): built once, on first use."""
        if self._int8_model is None:
            import copy
            import warnings

            import torch

            # The image path never runs CLIP's text tower: leave it out of the copy (about 40% of the
            # copy-and-quantize time on ViT-B/32; the copy cannot embed text, which nothing asks of it).
            clip = getattr(self.model[0], "model", None)
            text = getattr(clip, "text_model", None)
            try:
                if text is not None:
                    clip.text_model = None  # type: ignore[union-attr]
                copied = copy.deepcopy(self.model)
            finally:
                if text is not None:
                    clip.text_model = text  # type: ignore[union-attr]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
                self._int8_model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                    copied, {torch.nn.Linear}, dtype=torch.qint8, inplace=True).eval()
        return self._int8_model

    def _run(self, pixel_values: torch.Tensor, precision: str) -> np.ndarray:
        import torch

        model = self._int8() if precision == "int8" else self.model
        with torch.inference_mode(), self._autocast(precision):
            # The same features dict ``encode`` builds after the processor: every module (CLIP,
            # and a Normalize or Dense if the model has one) runs exactly as in ``encode``.
            features = model({"pixel_values": pixel_values, "modality": "image"})
            vectors = features["sentence_embedding"]
        result: np.ndarray = vectors.float().cpu().numpy()
        return result

    def candidates(self) -> list[str]:
        """The reduced precisions ``auto`` tries on this machine (see :func:`precision_candidates`)."""
        import torch

        cuda = self.device.startswith("cuda")
        return precision_candidates(
            self.device, cpu_bf16=not cuda and _cpu_has_native_bf16(),
            cuda_bf16=cuda and bool(torch.cuda.is_bf16_supported()),
            int8_engine=not cuda and _has_quantized_engine())

    def _decide(self, pixel_values: torch.Tensor) -> np.ndarray:
        """The first batch: run fp32 and the precisions to check, pick one, return its vectors."""
        tried = self.candidates() if self.precision == "auto" else [self.precision]
        timed = self.precision == "auto"
        # A warm-up on a slice first (oneDNN primitives, int8 weight packing), so rates compare.
        warm = pixel_values[: min(2, len(pixel_values))]
        import numpy as np

        order = ["fp32", *tried]
        if timed:
            for p in order:
                self._run(warm, p)
        # Timed in two interleaved halves (fp32, candidates, fp32, candidates), the best half per
        # precision: load from other work drifts during the batch and must not decide. Same total work.
        n = len(pixel_values)
        halves = [pixel_values[: (n + 1) // 2], pixel_values[(n + 1) // 2:]] if timed and n >= 2 else [pixel_values]
        parts: dict[str, list[np.ndarray]] = {p: [] for p in order}
        per_image = {p: float("inf") for p in order}
        for half in halves:
            for p in order:
                start = time.perf_counter()
                parts[p].append(self._run(half, p))
                per_image[p] = min(per_image[p], (time.perf_counter() - start) / len(half))
        outputs = {p: np.concatenate(chunks) for p, chunks in parts.items()}
        measured: dict[str, dict[str, float | None]] = {}
        for p in order:
            rate = round(1.0 / per_image[p], 2) if timed and per_image[p] > 0 else None
            measured[p] = {"images_per_second": rate,
                           "min_cosine": None if p == "fp32" else round(min_cosine(outputs[p], outputs["fp32"]), 6)}
        used, fell_back, reason = choose_precision(self.precision, measured, self.thresholds)
        self.choice = PrecisionChoice(requested=self.precision, used=used, device=self.device,
                                      thresholds={p: self.thresholds[p] for p in tried if p in self.thresholds},
                                      measured=measured, fell_back=fell_back, reason=reason,
                                      batch=len(pixel_values))
        if fell_back and self.strict:
            raise ParityError(
                f"precision {self.precision} disagrees with fp32 on the first batch: {reason}; stopped "
                "(--strict)", report=self.choice,
                hint=f"drop --strict to fall back to fp32, use --precision auto, or lower "
                     f"image_model.min_cosine.{self.precision} if that agreement is good enough")
        if fell_back:
            logger.warning("%s", self.choice.describe())
        self._active = used
        if used != "int8":
            self._int8_model = None  # not needed any more: free its memory
        if self.on_choice is not None:
            self.on_choice(self.choice)
        return outputs[used]

    @property
    def active_precision(self) -> str | None:
        """The precision that runs (None until the first batch decided it)."""
        return self.choice.used if self.choice is not None else None

    def embed_batch(self, pixel_values: torch.Tensor) -> np.ndarray:
        """Run all of the model's modules on a preprocessed batch; float32 [N, dims] on the CPU.

        The first call decides the precision (see the class docstring): it also runs fp32 (and, with
        ``auto``, every candidate) on this batch, so it takes a few times longer than the others.
        """
        if self.device != "cpu":
            pixel_values = pixel_values.pin_memory().to(self.device, non_blocking=True)
        if self.choice is None:
            if self.precision == "fp32":
                self.choice = PrecisionChoice(requested="fp32", used="fp32", device=self.device,
                                              thresholds={}, batch=len(pixel_values))
                if self.on_choice is not None:
                    self.on_choice(self.choice)
            else:
                return self._decide(pixel_values)
        return self._run(pixel_values, self._active)


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


def cpu_flags() -> set[str]:
    """This CPU's feature flags from /proc/cpuinfo (empty where there is none: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_has_native_bf16() -> bool:
    """Native bf16 for ``auto``: AVX512-BF16 or AMX in the flags; oneDNN's own answer elsewhere.

    oneDNN says yes on plain AVX-512 CPUs, where bf16 is emulated; ``auto`` only times what is native.
    """
    flags = cpu_flags()
    if flags:
        return bool({"avx512_bf16", "amx_bf16"} & flags)
    return _cpu_has_fast_bf16()


def _has_quantized_engine() -> bool:
    import torch

    try:
        engines = set(torch.backends.quantized.supported_engines) - {"none"}
        return bool(engines) and hasattr(torch.ao.quantization, "quantize_dynamic")
    except (AttributeError, RuntimeError):
        return False


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
