"""The Ray engine's overhead on one machine, and bulk throughput with 1, 2 and 4 writers.

Run from the repository root (needs ``pip install -e ".[ray]"``; a few minutes on 2 cores)::

    python -m benchmarks.ray_overhead                  # 64 generated 640x427 JPEGs, full-size ViT-B/32
    python -m benchmarks.ray_overhead -n 32 --model tiny --json

All in one process, on the same photos, the same model (``--model full``: the ViT-B/32 architecture of
``clip-ViT-B-32`` with random weights, built locally; ``tiny``: the test model), fp32, into the test
cluster (``tests.escluster``):

(a) local: ``toolkit.ingest.ingest`` (the baseline);
(b) ray: ``toolkit.ingest.ray_engine.ingest_ray`` on a local Ray (``ray.init(num_cpus=CPUS)``),
    Ray's start-up timed apart; (b/a) is the overhead ratio (below 1.0: Ray is slower); a second Ray
    run on a quarter of the photos splits it into a fixed cost per run and the rate once running;
(c) bulk: ``--docs`` prepared index actions (512-dim vectors as base64) sent by 1, 2 and 4 writer
    threads (``streaming_bulk`` chunks of 500, as the Ray driver sends them): documents/s. The test
    cluster is one Python process, so (c) measures the client side and the test server, not
    Elasticsearch's own bulk throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `toolkit` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]


def _settings(url: str, model: str, dims: int, alias: str) -> Any:
    from toolkit.settings import load_settings

    return load_settings(overrides={
        "elasticsearch.url": url, "index.alias": alias, "index.image_dims": dims, "image_model.name": model,
        "image_model.device": "cpu", "image_model.precision": "fp32", "image_model.batch_size": 16,
    }, environ={}, cwd=Path("/nonexistent-toolkit-bench-dir"))


def bulk_rate(client: Any, settings: Any, docs: int, writers: int, dims: int) -> float:
    """Documents/s for ``docs`` index actions sent by ``writers`` threads in chunks of 500."""
    import numpy as np

    from toolkit.ingest import encode_vector
    from toolkit.ingest.ray_engine import _bulk

    rng = np.random.default_rng(writers)
    actions = [{"_op_type": "index", "_index": settings.index.alias, "_id": f"w{writers}-{i}",
                "_source": {settings.fields.image_vector: encode_vector(rng.standard_normal(dims).astype("f4"),
                                                                       "base64"),
                            "path": f"/photos/{i}.jpg", "content_sha256": f"{i:064x}"}} for i in range(docs)]
    chunks = [actions[i:i + 500] for i in range(0, docs, 500)]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=writers) as pool:
        results = list(pool.map(lambda chunk: _bulk(client, chunk, settings), chunks))
    seconds = time.perf_counter() - start
    assert sum(ok for result in results for ok, _ in result) == docs
    return docs / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--count", type=int, default=64, help="photos (default 64)")
    parser.add_argument("--model", choices=("full", "tiny"), default="full")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs given to Ray")
    parser.add_argument("--docs", type=int, default=4000, help="documents per bulk measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import ray

    from benchmarks.ingest_throughput import generate_photos
    from tests.escluster.testing import running_cluster
    from tests.lib.ingest_helpers import setup_index
    from tests.models.image import build_tiny_clip_model, full_size_vit_b32
    from toolkit.cluster import make_client
    from toolkit.images.sources import open_source
    from toolkit.ingest import ingest
    from toolkit.ingest.ray_engine import RayOptions, ingest_ray

    out: dict[str, Any] = {"count": args.count, "model": args.model, "cpus": args.cpus}
    with tempfile.TemporaryDirectory(prefix="toolkit-ray-bench-") as tmp, running_cluster(version="9.3.0") as es:
        root = Path(tmp)
        model_dir = root / "model"
        if args.model == "full":
            full_size_vit_b32(model_dir)
            dims = 512
        else:
            build_tiny_clip_model(model_dir)
            dims = 64
        photos = root / "photos"
        generate_photos(photos, args.count, size=(640, 427))
        client = make_client(_settings(es.url, str(model_dir), dims, "bench-local"))

        def fresh(alias: str) -> Any:
            settings = _settings(es.url, str(model_dir), dims, alias)
            setup_index(client, settings)
            return settings

        settings = fresh("bench-local")
        local = ingest(client, settings, source=open_source(photos), failures_file=root / "local.jsonl")
        out["local_images_per_second"] = local.images_per_second

        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, address="local",
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        out["ray_start_seconds"] = round(time.perf_counter() - start, 1)
        try:
            remote = ingest_ray(client, fresh("bench-ray"), source=open_source(photos),
                                failures_file=root / "ray.jsonl", options=RayOptions())
            # A quarter of the photos: the difference gives Ray's fixed cost per run (actors start,
            # each loads the model) apart from its rate once running.
            quarter = root / "quarter"
            quarter.mkdir()
            for p in sorted(photos.iterdir())[: max(1, args.count // 4)]:
                (quarter / p.name).write_bytes(p.read_bytes())
            small = ingest_ray(client, fresh("bench-ray-quarter"), source=open_source(quarter),
                               failures_file=root / "ray-quarter.jsonl", options=RayOptions())
        finally:
            ray.shutdown()
        assert remote.indexed == local.indexed == args.count, (remote.as_json(), local.as_json())
        out["ray_images_per_second"] = remote.images_per_second
        out["ray_vs_local"] = round(remote.images_per_second / local.images_per_second, 2)
        marginal = (remote.indexed - small.indexed) / max(1e-9, remote.seconds - small.seconds)
        out["ray_running_images_per_second"] = round(marginal, 2)
        out["ray_fixed_seconds"] = round(remote.seconds - remote.indexed / marginal, 1)
        out["ray_running_vs_local"] = round(marginal / local.images_per_second, 2)

        settings = fresh("bench-bulk")
        out["bulk_docs_per_second"] = {w: round(bulk_rate(client, settings, args.docs, w, dims), 1)
                                       for w in (1, 2, 4)}
        base = out["bulk_docs_per_second"][1]
        out["bulk_vs_one_writer"] = {w: round(r / base, 2) for w, r in out["bulk_docs_per_second"].items()}

    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"photos: {args.count} (640x427 JPEG), model: {args.model}, fp32, Ray CPUs: {args.cpus}")
    print(f"(a) local          {out['local_images_per_second']:8.2f} images/s")
    print(f"(b) ray            {out['ray_images_per_second']:8.2f} images/s  (Ray start {out['ray_start_seconds']} s, "
          "not counted)")
    print(f"    ray / local    {out['ray_vs_local']:8.2f}")
    print(f"    ray once running {out['ray_running_images_per_second']:6.2f} images/s "
          f"({out['ray_running_vs_local']:.2f}x local), fixed cost per run {out['ray_fixed_seconds']} s")
    for w, rate in out["bulk_docs_per_second"].items():
        ratio = out["bulk_vs_one_writer"][w]
        print(f"(c) bulk {w} writer{'s' if w > 1 else ' '} {rate:8.1f} docs/s  ({ratio:.2f}x one)")


if __name__ == "__main__":
    main()
