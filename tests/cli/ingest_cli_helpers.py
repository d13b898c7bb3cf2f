"""Shared pieces of the ``toolkit ingest`` CLI tests: a config file for the tiny CLIP model."""

from __future__ import annotations

from pathlib import Path

from tests.lib.ingest_helpers import DIMS, make_settings, setup_index
from toolkit.cluster import make_client


def tiny_clip_config(url: str, folder: Path, extra: str = "") -> Path:
    """Write ``folder/toolkit.yaml`` for the cluster at ``url``: the tiny CLIP model on CPU, 64 dims, batches of
    4, then the YAML in ``extra``; set the index up first. Returns the file's path.

    Example: ``tiny_clip_config(escluster.url, tmp_path, "ingest:\\n  initial_backoff: 0.01\\n")``.
    """
    from tests.models import tiny_clip_model

    model = str(tiny_clip_model())
    settings = make_settings(url, **{"image_model.name": model})
    setup_index(make_client(settings), settings)
    file = folder / "toolkit.yaml"
    file.write_text(f"elasticsearch:\n  url: {url}\nindex:\n  image_dims: {DIMS}\n"
                    f"image_model:\n  name: {model}\n  device: cpu\n  batch_size: 4\n" + extra)
    return file
