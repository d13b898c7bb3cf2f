"""``toolkit setup``: render the assets, check their dims against the models, install them.

Example::

    report = setup(client, settings)
    [(r.kind, r.name, r.outcome) for r in report.results]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit import assets as asset_mod
from toolkit.cluster import cluster_facts
from toolkit.devtools import Request, path, send
from toolkit.errors import ModelError, NotFound
from toolkit.settings import Settings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


@dataclass
class SetupReport:
    results: list[asset_mod.AssetResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(r.outcome != "unchanged" for r in self.results)


def plan(settings: Settings, assets_dir: Path | None = None) -> list[asset_mod.Asset]:
    """The assets setup would install, rendered (what ``--dry-run`` prints). Sends nothing."""
    return asset_mod.load_assets(settings, assets_dir)


def deployed_embedding_size(client: Elasticsearch, model_id: str) -> int | None:
    """``embedding_size`` of an uploaded text_embedding model; None when the model is not uploaded."""
    try:
        body = send(client, Request("GET", f"_ml/trained_models/{path(model_id)}"),
                    doing=f"reading trained model {model_id}")
    except NotFound:
        return None
    configs = body.get("trained_model_configs") or []
    if not configs:
        return None
    te = configs[0].get("inference_config", {}).get("text_embedding", {})
    size = te.get("embedding_size")
    return int(size) if size else None


def image_model_dims(settings: Settings) -> int | None:
    """Output dims of the configured image model, or None when they cannot be read."""
    from toolkit.modelinfo import output_dims

    try:
        return output_dims(settings.image_model.name)
    except ModelError:
        return None


def setup(client: Elasticsearch, settings: Settings, *, assets_dir: Path | None = None,
          on_result: Callable[[asset_mod.AssetResult], None] | None = None) -> SetupReport:
    """Install pipelines, component templates, the index template and the first index (idempotent).

    Refuses (DimsMismatch) when the template's vector dims differ from the image model's output or
    from the deployed text model's ``embedding_size``.
    """
    report = SetupReport()
    assets = plan(settings, assets_dir)
    # First a request that says whether Elasticsearch answers at all (not a web server or Kibana's port).
    cluster_facts(client)
    image_dims = image_model_dims(settings)
    if image_dims is None:
        report.warnings.append(f"could not read the output dims of image model "
                               f"'{settings.image_model.name}'; image dims not checked")
    caption_dims = deployed_embedding_size(client, settings.text_model.cluster_model_id)
    if caption_dims is None:
        report.warnings.append(f"text model '{settings.text_model.cluster_model_id}' is not in the cluster "
                               "yet: captions are embedded once `toolkit deploy-model` has run")
    asset_mod.check_dims(assets, settings, image_dims=image_dims, caption_dims=caption_dims)
    for result in asset_mod.install(client, assets):
        report.results.append(result)
        if on_result:
            on_result(result)
    return report
