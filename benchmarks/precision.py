"""Precision end to end: naive loop, fp32, auto and each explicit precision through ``ingest`` into the
test cluster (bulk included), with agreement against fp32 and the bytes each document costs on the wire.

Run from the repository root (a minute or two on 2 cores)::

    python -m benchmarks.precision                  # 64 generated 1600x1067 JPEG photos
    python -m benchmarks.precision -n 128 --json

All in one run, on the same photos and the same model (the full ViT-B/32 CLIP architecture with RANDOM
weights, ``tests.models.image.full_size_vit_b32``: same compute as ``clip-ViT-B-32``, built locally):

- naive: the reference articles' loop (``model.encode(image)`` one at a time; no bulk sent);
- fp32 / auto / int8 / bf16 / fp16: ``toolkit.ingest.ingest`` (what ``toolkit ingest`` runs) with
  ``image_model.precision`` set, into a fresh index of the in-process test cluster playing
  Elasticsearch 9.3 (so vectors go as base64). The rate is the run's own (``report.images_per_second``:
  the first-batch precision check included, the model load not). bf16 runs only where the CPU has
  native bf16 (``--bf16`` forces it), fp16 only on CUDA;
- agreement with the fp32 run, from the vectors the cluster stored: the min cosine over all images and
  the top-10 agreement (for each image, the share of its 10 nearest neighbours among the benchmark's
  images that fp32 finds too, averaged);
- bytes per document of the bulk ``_source`` with the vector as JSON numbers vs base64;
- model only: each precision on one batch of tensors, interleaved, best of 3 (steadier under load).

Ratios are against the fp32 run of the same invocation; the CPU flags that matter are printed first.
Random weights quantize more gently than trained CLIP weights: the guard is what keeps real runs honest.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import struct
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `toolkit`, `tests` and `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_facts() -> dict[str, Any]:
    """The CPU model and which of the flags that decide precision it has (from /proc/cpuinfo)."""
    from toolkit.images.embedder import cpu_flags

    name = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = cpu_flags()
    return {"model": name, "cores": os.cpu_count(), "flags": {f: f in flags for f in FLAGS_OF_INTEREST}}


def stored_vectors(handle: Any, alias_prefix: str) -> dict[str, Any]:
    """path -> vector as the test cluster stored it (base64 decoded), for the index behind ``alias_prefix``."""
    import numpy as np

    out: dict[str, Any] = {}
    for name, idx in handle.state.indices.items():
        if not name.startswith(alias_prefix):
            continue
        for rec in idx.docs.values():
            value = rec.source["image_embedding"]
            if isinstance(value, str):
                raw = base64.b64decode(value)
                value = struct.unpack(f">{len(raw) // 4}f", raw)
            out[rec.source["path"]] = np.asarray(value, dtype=np.float64)
    return out


def agreement(reference: dict[str, Any], other: dict[str, Any], k: int = 10) -> tuple[float, float]:
    """(min cosine, mean top-k agreement) of ``other``'s vectors against ``reference``'s, same images."""
    import numpy as np

    keys = sorted(reference)
    a = np.stack([reference[key] for key in keys])
    b = np.stack([other[key] for key in keys])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    min_cos = float((a * b).sum(axis=1).min())
    k = min(k, len(keys) - 1)

    def neighbours(m: Any) -> list[set[int]]:
        sims = m @ m.T
        np.fill_diagonal(sims, -np.inf)
        return [set(np.argsort(-row)[:k].tolist()) for row in sims]

    na, nb = neighbours(a), neighbours(b)
    return min_cos, float(np.mean([len(x & y) / k for x, y in zip(na, nb, strict=True)]))


def bytes_per_doc(vectors: dict[str, Any]) -> dict[str, float]:
    """Mean size of a bulk ``_source`` (vector and the usual fields) with a JSON-array vs base64 vector."""
    import numpy as np

    from toolkit.ingest import encode_vector

    sizes: dict[str, list[int]] = {"json": [], "base64": []}
    for path, vector in vectors.items():
        v32 = np.asarray(vector, dtype=np.float32)
        for encoding in sizes:
            source = {"image_embedding": encode_vector(v32, encoding), "path": path,
                      "content_sha256": "0" * 64, "width": 1600, "height": 1067,
                      "image_model": "clip-ViT-B-32", "image_precision": "fp32",
                      "ingested_at": "2026-01-01T00:00:00.000Z"}
            sizes[encoding].append(len(json.dumps(source)))
    return {encoding: round(sum(s) / len(s), 1) for encoding, s in sizes.items()}


def model_only(model_dir: Path, device: str, batch_size: int, precisions: list[str],
               repeat: int = 3) -> dict[str, Any]:
    """Images/s of the model alone on one random batch per precision, interleaved, best of ``repeat``
    (steadier than the end-to-end runs when other work shares the machine)."""
    import time

    import torch

    from toolkit.images.embedder import ClipImageEmbedder

    embedder = ClipImageEmbedder(str(model_dir), device=device, precision="fp32", batch_size=batch_size)
    batch = torch.randn(batch_size, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    if device != "cpu":
        batch = batch.to(device)
    best = {p: float("inf") for p in ["fp32", *precisions]}
    for p in best:
        embedder._run(batch[:2], p)  # warm-up (int8: quantization, weight packing)
    for _ in range(repeat):
        for p in best:
            start = time.perf_counter()
            embedder._run(batch, p)
            best[p] = min(best[p], time.perf_counter() - start)
    return {p: {"images_per_second": round(batch_size / s, 2), "ratio_to_fp32": round(best["fp32"] / s, 2)}
            for p, s in best.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("-n", "--count", type=int, default=64, help="generated photos (default 64)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bf16", action="store_true", help="also run bf16 where it is emulated (slow)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (fp16 runs on CUDA only)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")

    import torch

    from benchmarks.ingest_throughput import generate_photos, run_naive
    from tests.escluster.testing import start_cluster
    from tests.lib.ingest_helpers import setup_index
    from tests.models.image import full_size_vit_b32
    from toolkit.cluster import make_client
    from toolkit.images.embedder import ClipImageEmbedder, _cpu_has_native_bf16
    from toolkit.images.sources import open_source
    from toolkit.ingest import ingest, load_embedder
    from toolkit.settings import load_settings

    figures: dict[str, Any] = {"cpu": cpu_facts(), "torch": torch.__version__, "count": args.count,
                               "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                               "device": args.device, "runs": {}, "load_average_before": _load_average()}
    cuda = args.device.startswith("cuda")
    work = Path(tempfile.mkdtemp(prefix="toolkit-bench-precision-"))
    model_dir = full_size_vit_b32(work / "vit-b-32")
    paths = generate_photos(work / "photos", args.count)
    handle = start_cluster(license="trial", version="9.3.0")
    try:
        # Warm torch up once (thread pool, oneDNN primitives) so the first timed run is not penalised.
        warm = ClipImageEmbedder(str(model_dir), device=args.device, precision="fp32", batch_size=args.batch_size)
        warm.embed_batch(torch.zeros(args.batch_size, 3, 224, 224))
        if not args.skip_naive:
            seconds, _ = run_naive(warm.model, paths)
            figures["runs"]["naive"] = {"images_per_second": round(len(paths) / seconds, 2)}
        del warm

        variants = ["fp32", "auto", "int8"] if not cuda else ["fp32", "auto", "fp16", "bf16"]
        if not cuda and (args.bf16 or _cpu_has_native_bf16()):
            variants.append("bf16")
        vectors: dict[str, dict[str, Any]] = {}
        for variant in variants:
            alias = f"bench-{variant}"
            settings = load_settings(environ={}, cwd=work, overrides={
                "elasticsearch.url": handle.url, "index.alias": alias, "index.image_dims": 512,
                "index.template_name": f"toolkit-{alias}", "index.pipeline": f"toolkit-caption-{alias}",
                "image_model.name": str(model_dir), "image_model.device": args.device,
                "image_model.precision": variant, "image_model.batch_size": args.batch_size})
            client = make_client(settings)
            setup_index(client, settings)
            embedder = load_embedder(settings)
            report = ingest(client, settings, source=open_source(work / "photos"), embedder=embedder,
                            failures_file=work / f"failures-{variant}.jsonl")
            assert report.indexed == len(paths), report.as_json()
            vectors[variant] = stored_vectors(handle, alias)
            figures["runs"][variant] = {"images_per_second": report.images_per_second,
                                        "precision": report.precision, "vector_encoding": report.vector_encoding}
            del embedder
        base = figures["runs"]["fp32"]["images_per_second"]
        for variant, run in figures["runs"].items():
            run["ratio_to_fp32"] = round(run["images_per_second"] / base, 2) if base else None
            if variant in vectors and variant != "fp32":
                run["min_cosine"], run["top10_agreement"] = (round(x, 5) for x in agreement(vectors["fp32"],
                                                                                             vectors[variant]))
        figures["model_only"] = model_only(model_dir, args.device, args.batch_size,
                                           [v for v in variants if v not in ("fp32", "auto")])
        figures["auto_chose"] = (figures["runs"]["auto"]["precision"] or {}).get("used")
        figures["bytes_per_doc"] = bytes_per_doc(vectors["fp32"])
    finally:
        handle.stop()
    figures["load_average_after"] = _load_average()
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        _print_report(figures)
    return figures


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _print_report(f: dict[str, Any]) -> None:
    cpu = f["cpu"]
    have = ", ".join(k for k, v in cpu["flags"].items() if v) or "none"
    lacking = ", ".join(k for k, v in cpu["flags"].items() if not v) or "none"
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores; torch {f['torch']}, {f['threads']} threads)")
    print(f"  flags present: {have}")
    print(f"  flags absent:  {lacking}")
    print(f"{f['count']} photos 1600x1067, batch {f['batch_size']}, device {f['device']}; ratios vs the fp32 run\n")
    print(f"{'run':<8} {'img/s':>8} {'x fp32':>7} {'min cos':>9} {'top-10':>7}  precision")
    for name, run in f["runs"].items():
        choice = run.get("precision") or {}
        used = choice.get("used", "")
        note = f"{used}" + (f" (fell back: {choice.get('reason')})" if choice.get("fell_back") else "")
        if name == "auto":
            note += f" (auto: {choice.get('reason', '')})"
        cos = f"{run['min_cosine']:.5f}" if "min_cosine" in run else ""
        top = f"{run['top10_agreement']:.3f}" if "top10_agreement" in run else ""
        print(f"{name:<8} {run['images_per_second']:>8.2f} {run['ratio_to_fp32'] or 0:>7.2f} {cos:>9} {top:>7}  {note}")
    print("\nmodel only, batch of random tensors, best of 3 interleaved: " + ", ".join(
        f"{p} {m['images_per_second']:.2f} img/s ({m['ratio_to_fp32']:.2f}x)" for p, m in f["model_only"].items()))
    b = f["bytes_per_doc"]
    print(f"\nbytes per document (_source): JSON vector {b['json']:.0f}, base64 {b['base64']:.0f} "
          f"({b['base64'] / b['json']:.2f}x)")
    print(f"auto chose: {f['auto_chose']}")
    print(f"load average before/after: {f['load_average_before']} / {f['load_average_after']} "
          "(other work on the machine skews rates, not the agreement figures)")


if __name__ == "__main__":
    main()
