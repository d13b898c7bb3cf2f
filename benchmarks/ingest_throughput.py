"""Ingest throughput: the reference articles' naive loop against the toolkit's image pipeline.

Run from the repository root (takes a few minutes on 2 cores)::

    python -m benchmarks.ingest_throughput            # 64 generated 1600x1067 JPEG photos
    python -m benchmarks.ingest_throughput -n 128 --json

All in one run, on the same generated photos and the same model (the full ViT-B/32 CLIP architecture
with RANDOM weights, built locally by ``tests.models.image.full_size_vit_b32``: same compute as
``clip-ViT-B-32``):

(a) naive: the reference articles' loop: open each image at full size, ``model.encode(image)`` one at
    a time, a bulk request every 20 documents (the actions are built; nothing is sent).
(b) pipeline: ``toolkit.images.embedder.embed_paths`` (draft decoding in worker threads, paused while
    the CPU model runs) up to the same bulk actions; (b') the same with decoding overlapped.
(c) model-only: batched inference on pre-decoded tensors (batch 16): the ceiling on this machine.
(d) bf16: the pipeline with ``precision="bf16"``, its ratio to (b) and its cosine against fp32.
(e) single-thread decode: full-size vs draft decoding, images/s.
(f) cosine of the fast path against the reference path on scikit-image's real photos (saved as
    1600-px JPEGs), with the full-size model and with the tiny test model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `toolkit` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BULK_EVERY = 20
INDEX = "images"
# scikit-image's bundled photos (no download): the colour ones, and gray ones that look like photos.
COLOR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
GRAY_PHOTOS = ("camera", "grass", "gravel", "brick", "moon")


def generate_photos(
    folder: Path, count: int, *, size: tuple[int, int] = (1600, 1067), seed: int = 0
) -> list[Path]:
    """Write ``count`` realistic JPEG photos (quality 90) into ``folder``.

    Each is a random 3:2 crop of a scikit-image photo, flipped at random, colour-jittered, upscaled
    with Lanczos to ``size`` and given mild sensor-like noise, so JPEG sizes and decode times are like
    camera photos' (smooth areas, edges, fine texture).
    """
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    bases = [getattr(data, name)() for name in COLOR_PHOTOS + GRAY_PHOTOS]
    bases = [np.stack([b] * 3, axis=-1) if b.ndim == 2 else b[..., :3] for b in bases]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    width, height = size
    for i in range(count):
        base = bases[i % len(bases)]
        h, w = base.shape[:2]
        crop_w = int(min(w, h * 1.5) * rng.uniform(0.6, 1.0))
        crop_h = int(crop_w / 1.5)
        top, left = rng.integers(0, h - crop_h + 1), rng.integers(0, w - crop_w + 1)
        patch = base[top:top + crop_h, left:left + crop_w].astype(np.float32)
        patch *= rng.uniform(0.85, 1.15, size=3)  # white balance / exposure
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        image = Image.fromarray(np.clip(patch, 0, 255).astype(np.uint8))
        image = image.resize((width, height), Image.LANCZOS)
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 4.0, size=(height, width, 3))
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def _action(path: Path, vector: Any) -> dict[str, Any]:
    source = {"path": str(path), "image_embedding": vector.tolist()}
    return {"_index": INDEX, "_id": path.stem, "_source": source}


def _bulk_every(actions: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for action in actions:
        chunk.append(action)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_naive(model: Any, paths: list[Path]) -> tuple[float, dict[Path, Any]]:
    """(a) The articles' loop; returns (seconds, vectors). The bulk request is where timing stops."""
    from PIL import Image

    vectors = {}
    start = time.perf_counter()
    actions = []
    for path in paths:
        image = Image.open(path)
        vector = model.encode(image)
        vectors[path] = vector
        actions.append(_action(path, vector))
        if len(actions) >= BULK_EVERY:
            actions = []  # helpers.bulk(es, actions) would go here
    return time.perf_counter() - start, vectors


def run_pipeline(
    embedder: Any, paths: list[Path], workers: int | None, pause_decode: bool | None = None
) -> tuple[float, dict[Path, Any]]:
    """(b) The toolkit pipeline up to the bulk actions; returns (seconds, vectors)."""
    from toolkit.errors import ImageError
    from toolkit.images.embedder import embed_paths

    vectors = {}

    def actions() -> Iterator[dict[str, Any]]:
        for path, result in embed_paths(paths, embedder, workers=workers, pause_decode=pause_decode):
            if isinstance(result, ImageError):
                raise result
            vectors[path] = result
            yield _action(path, result)

    start = time.perf_counter()
    for _chunk in _bulk_every(actions(), BULK_EVERY):
        pass  # streaming_bulk would send each chunk here
    return time.perf_counter() - start, vectors


def run_model_only(embedder: Any, paths: list[Path], batch_size: int) -> float:
    """(c) Batched inference on pre-decoded, preprocessed tensors; returns seconds."""
    from toolkit.images.decode import load_image

    arrays = [embedder.prepare(load_image(path, target=embedder.preprocessing.target)) for path in paths]
    batches = [embedder.collate(arrays[i:i + batch_size]) for i in range(0, len(arrays), batch_size)]
    start = time.perf_counter()
    for batch in batches:
        embedder.embed_batch(batch)
    return time.perf_counter() - start


def run_decode(paths: list[Path], *, draft: bool, prepare: Callable[[Any], Any] | None = None) -> float:
    """(e) Single-thread decode (optionally + resize/crop); returns seconds."""
    from toolkit.images.decode import load_image

    start = time.perf_counter()
    for path in paths:
        image = load_image(path, draft=draft)
        if prepare is not None:
            prepare(image)
    return time.perf_counter() - start


def cosine(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def real_photo_cosines(model_dir: Path, folder: Path) -> dict[str, float]:
    """(f) Fast path (draft) and full decode vs the reference path, per scikit-image photo."""
    from PIL import Image, ImageOps
    from sentence_transformers import SentenceTransformer
    from skimage import data

    from toolkit.images.decode import load_image
    from toolkit.images.embedder import ClipImageEmbedder, embed_paths

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in COLOR_PHOTOS + ("camera",):
        image = Image.fromarray(getattr(data, name)())
        scale = 1600 / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        path = folder / f"{name}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    reference = SentenceTransformer(str(model_dir), device="cpu")
    embedder = ClipImageEmbedder(str(model_dir), batch_size=8)
    processor = reference[0].processor.image_processor
    fast = dict(embed_paths(paths, embedder))
    result = {}
    for path in paths:
        original = ImageOps.exif_transpose(Image.open(path))
        expected = reference.encode(original)
        result[path.stem] = cosine(fast[path], expected)
        full = next(embedder.embed([load_image(path, draft=False)]))
        result[path.stem + " (no draft)"] = cosine(full, expected)
        # Model-free: the pixel_values themselves (random weights make vectors forgiving).
        pixels = processor(original, return_tensors="np")["pixel_values"]
        drafted = embedder.collate([embedder.prepare(load_image(path))])
        result[path.stem + " (pixels)"] = cosine(drafted, pixels)
    return result


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--count", type=int, default=64, help="generated photos (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=None,
                        help="decode threads of the pipeline (default: default_workers())")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run (a), (b), (c) this many times, interleaved; keep the best of each")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="reuse a full-size random ViT-B/32 built here (built if missing)")
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore")
    import torch
    from sentence_transformers import SentenceTransformer

    from tests.models.image import build_tiny_clip_model, full_size_vit_b32
    from toolkit.images.embedder import ClipImageEmbedder, default_workers

    if args.threads:
        torch.set_num_threads(args.threads)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    figures: dict[str, Any] = {
        "count": args.count, "batch_size": args.batch_size, "workers": args.workers or default_workers(),
        "repeat": args.repeat,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_before": _load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        root = Path(tmp)
        model_dir = args.model_dir or root / "vit-b-32"
        if not (model_dir / "modules.json").exists():
            say("building the full-size ViT-B/32 (random weights)...")
            full_size_vit_b32(model_dir)
        say(f"generating {args.count} photos (1600x1067 JPEG q90)...")
        paths = generate_photos(root / "photos", args.count)
        figures["mean_jpeg_kib"] = round(sum(p.stat().st_size for p in paths) / len(paths) / 1024, 1)

        # (e) decode first: it needs no model and no threads.
        full_s = run_decode(paths, draft=False)
        draft_s = run_decode(paths, draft=True)
        figures["decode_full_img_s"] = args.count / full_s
        figures["decode_draft_img_s"] = args.count / draft_s

        embedder = ClipImageEmbedder(str(model_dir), batch_size=args.batch_size)
        embedder.embed_batch(embedder.collate([embedder.prepare(_warm_image())] * 2))  # warm-up
        figures["decode_draft_and_prepare_img_s"] = args.count / run_decode(
            paths, draft=True, prepare=embedder.prepare
        )

        model = None
        if not args.skip_naive:
            model = SentenceTransformer(str(model_dir), device="cpu")
            model.encode(_warm_image())
        best: dict[str, float] = {}

        def keep(key: str, seconds: float) -> None:
            best[key] = max(best.get(key, 0.0), args.count / seconds)

        for round_ in range(1, args.repeat + 1):
            if model is not None:
                say(f"[{round_}/{args.repeat}] (a) naive loop...")
                naive_s, naive_vectors = run_naive(model, paths)
                keep("naive_img_s", naive_s)
            say(f"[{round_}/{args.repeat}] (b) toolkit pipeline fp32...")
            pipe_s, fp32_vectors = run_pipeline(embedder, paths, args.workers)
            keep("pipeline_fp32_img_s", pipe_s)
            say(f"[{round_}/{args.repeat}] (b') the same, decoding overlapped with inference...")
            keep("pipeline_fp32_overlapped_img_s", run_pipeline(embedder, paths, args.workers, False)[0])
            say(f"[{round_}/{args.repeat}] (c) model only...")
            keep("model_only_fp32_img_s", run_model_only(embedder, paths, args.batch_size))
        figures.update(best)
        del model
        if "naive_img_s" in figures:
            figures["cosine_pipeline_vs_naive_min"] = min(
                cosine(fp32_vectors[p], naive_vectors[p]) for p in paths
            )
        if not args.skip_bf16:
            say("(d) toolkit pipeline bf16...")
            bf16 = ClipImageEmbedder(str(model_dir), batch_size=args.batch_size, precision="bf16")
            bf16.embed_batch(bf16.collate([bf16.prepare(_warm_image())] * 2))
            bf16_s, bf16_vectors = run_pipeline(bf16, paths, args.workers)
            figures["pipeline_bf16_img_s"] = args.count / bf16_s
            figures["cosine_bf16_vs_fp32_min"] = min(cosine(bf16_vectors[p], fp32_vectors[p]) for p in paths)
            del bf16
        say("(f) real photos: fast path vs reference...")
        figures["real_photos_cosine_full_model"] = real_photo_cosines(model_dir, root / "real")
        tiny_dir = build_tiny_clip_model(root / "tiny-clip")
        figures["real_photos_cosine_tiny_model"] = real_photo_cosines(tiny_dir, root / "real-tiny")
    figures["load_average_after"] = _load_average()

    pipe, ceiling = figures["pipeline_fp32_img_s"], figures["model_only_fp32_img_s"]
    figures["ratio_pipeline_vs_model_only"] = pipe / ceiling
    if "naive_img_s" in figures:
        figures["ratio_pipeline_vs_naive"] = pipe / figures["naive_img_s"]
    if "pipeline_bf16_img_s" in figures:
        figures["ratio_bf16_vs_fp32"] = figures["pipeline_bf16_img_s"] / pipe

    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        _print_report(figures)
    return figures


def _warm_image() -> Any:
    from PIL import Image

    return Image.new("RGB", (320, 240), (120, 130, 140))


def _print_report(f: dict[str, Any]) -> None:
    print(f"\n{f['count']} photos 1600x1067 (mean {f['mean_jpeg_kib']} KiB), batch {f['batch_size']}, "
          f"{f['workers']} decode worker(s), {f['torch_threads']} torch threads, {f['cpu_count']} CPUs, "
          f"best of {f['repeat']}; "
          f"load average before {f['load_average_before']}, after {f['load_average_after']}")
    rows = [
        ("(a) naive loop (encode one by one)", f.get("naive_img_s")),
        ("(b) toolkit pipeline fp32", f["pipeline_fp32_img_s"]),
        ("(b') pipeline fp32, decode overlapped", f["pipeline_fp32_overlapped_img_s"]),
        ("(c) model only fp32, batch (ceiling)", f["model_only_fp32_img_s"]),
        ("(d) toolkit pipeline bf16", f.get("pipeline_bf16_img_s")),
        ("(e) decode 1 thread, full size", f["decode_full_img_s"]),
        ("(e) decode 1 thread, draft", f["decode_draft_img_s"]),
        ("(e) decode 1 thread, draft + resize/crop", f["decode_draft_and_prepare_img_s"]),
    ]
    for label, value in rows:
        if value is not None:
            print(f"  {label:<44} {value:8.2f} img/s")
    print(f"  b/c pipeline vs ceiling   {f['ratio_pipeline_vs_model_only']:.3f}   (target >= 0.90)")
    if "ratio_pipeline_vs_naive" in f:
        print(f"  b/a pipeline vs naive     {f['ratio_pipeline_vs_naive']:.3f}")
        print(f"  cosine pipeline vs naive  min {f['cosine_pipeline_vs_naive_min']:.5f}")
    if "ratio_bf16_vs_fp32" in f:
        print(f"  bf16/fp32 pipeline        {f['ratio_bf16_vs_fp32']:.3f}   (target >= 1.9)")
        print(f"  cosine bf16 vs fp32       min {f['cosine_bf16_vs_fp32_min']:.5f}   (target >= 0.999)")
    for key, label in (("real_photos_cosine_full_model", "full-size ViT-B/32"),
                       ("real_photos_cosine_tiny_model", "tiny CLIP")):
        values = f[key]
        print(f"  real photos, fast path vs reference, {label}:")
        for name, value in values.items():
            print(f"    {name:<36} {value:.6f}")


if __name__ == "__main__":
    main()
