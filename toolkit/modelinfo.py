"""What a sentence-transformers model outputs, read from its small JSON files (no torch needed).

Works for local directories and for hub ids (fetching only the JSON files through huggingface_hub,
which caches them). Used to check vector dims before any heavy work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.errors import ModelError

# Known outputs of the default models, so an offline check still works for them.
KNOWN_DIMS = {
    "clip-ViT-B-32": 512,
    "sentence-transformers/clip-ViT-B-32": 512,
    "sentence-transformers/clip-ViT-B-32-multilingual-v1": 512,
}


def _hub_repo(name: str) -> str:
    return name if "/" in name else f"sentence-transformers/{name}"


def _read_json(model: str, file: str, *, allow_network: bool = True) -> Any:
    local = Path(model)
    if local.is_dir():
        target = local / file
        if not target.is_file():
            return None
        return json.loads(target.read_text(encoding="utf-8"))
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(_hub_repo(model), file)
        if isinstance(cached, str):
            return json.loads(Path(cached).read_text(encoding="utf-8"))
        if not allow_network:
            return None
        return json.loads(Path(hf_hub_download(_hub_repo(model), file, etag_timeout=5)).read_text(encoding="utf-8"))
    except Exception:  # absent file, offline, unknown repo: the caller decides
        return None


def output_dims(model: str) -> int:
    """The embedding size a sentence-transformers model produces.

    Follows ``modules.json`` and takes the last module that changes the size: Dense
    (``out_features``), CLIPModel (``projection_dim``) or the Transformer (``hidden_size``/``dim``).

    Example::

        output_dims("clip-ViT-B-32")   # 512
    """
    # The known defaults need no network; anything else is read from its files (local, cache, hub).
    modules = _read_json(model, "modules.json", allow_network=model not in KNOWN_DIMS)
    if modules is None:
        if model in KNOWN_DIMS:
            return KNOWN_DIMS[model]
        raise ModelError(f"cannot read modules.json of model '{model}'",
                         hint="pass a sentence-transformers model directory or hub id")
    dims: int | None = None
    for module in modules:
        folder = module.get("path", "")
        kind = module.get("type", "")
        prefix = f"{folder}/" if folder else ""
        if kind.endswith("Dense"):
            cfg = _read_json(model, f"{prefix}config.json") or {}
            dims = int(cfg.get("out_features", dims or 0)) or dims
        elif kind.endswith("CLIPModel"):
            cfg = _read_json(model, f"{prefix}config.json") or {}
            dims = int(cfg.get("projection_dim", 0)) or dims
        elif kind.endswith("Transformer"):
            cfg = _read_json(model, f"{prefix}config.json") or {}
            dims = int(cfg.get("hidden_size") or cfg.get("dim") or 0) or dims
    if dims is None:
        if model in KNOWN_DIMS:
            return KNOWN_DIMS[model]
        raise ModelError(f"cannot tell the output dims of model '{model}'",
                         hint="set index.image_dims / index.caption_dims explicitly")
    return dims
